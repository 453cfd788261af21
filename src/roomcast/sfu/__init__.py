"""Media routing: routers, transports, producers and consumers."""
