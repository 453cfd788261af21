"""Cross-node routing (which node hosts a room; deliver to a participant elsewhere): not built yet.

Today every room lives in this process (``rooms.manager.RoomManager``). The multi-node issue adds the
interface here with an in-process ``LocalRouter`` and a ``RedisRouter``.
"""
