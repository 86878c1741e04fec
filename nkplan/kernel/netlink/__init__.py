"""rtnetlink: sockets, decoding, encoding (pyroute2), namespaces, devices, routes."""
