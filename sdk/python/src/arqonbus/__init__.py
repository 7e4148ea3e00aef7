"""ArqonBus client for asyncio: protocol v1 with reconnects, resume and exactly-once delivery.

    async with arqonbus.connect("ws://127.0.0.1:8080/ws") as bus:
        async for item in bus.subscribe("science", "explore"):
            ...
"""

from .client import Bus, connect
from .errors import ArqonBusError
from .options import Options
from .subscription import Subscription
from .types import (
    ChannelPage,
    Event,
    Gap,
    HistoryPage,
    Limits,
    Position,
    PresenceChange,
    PresenceClient,
    PresencePage,
    PrivateMessage,
    PrivateSent,
    Published,
    StateChange,
    Welcome,
)

__version__ = "0.1.0"

__all__ = [
    "ArqonBusError",
    "Bus",
    "ChannelPage",
    "Event",
    "Gap",
    "HistoryPage",
    "Limits",
    "Options",
    "Position",
    "PresenceChange",
    "PresenceClient",
    "PresencePage",
    "PrivateMessage",
    "PrivateSent",
    "Published",
    "StateChange",
    "Subscription",
    "Welcome",
    "connect",
]
