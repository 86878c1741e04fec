"""Documents at nkplan's boundary: saved plans, snapshots, `show`, rendered plans. Pure."""
