"""The sandbox clock: in dev mode, the kernel's time can be moved forward to see a month
close, a trial end or a scheduled change apply."""
