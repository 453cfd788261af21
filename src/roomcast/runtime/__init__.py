"""The only layer that touches sockets, asyncio and clocks."""
