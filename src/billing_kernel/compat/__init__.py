"""The incumbents' wire protocols (Lago, OpenMeter, Stripe, Polar): their clients send usage
to the kernel and read it back by changing a base URL. One file per protocol holds its
routes, how it names fields and how it shapes errors; `rules.py` maps any protocol's event to
the kernel's usage event, and `service.py` records a protocol's batch, all or nothing."""
