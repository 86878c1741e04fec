"""The only code that touches the kernel. Everything above talks to it through `base.Kernel`."""
