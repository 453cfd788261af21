"""Which node hosts a room, signaling relayed to it, calls between nodes, the node registry (routing/api.py).

``LocalRouting`` (routing/local.py) is the one-process default; ``RedisRouting`` (routing/redis.py) makes
several processes (workers on one machine, nodes on several) one cluster. Only this package knows Redis.
"""
