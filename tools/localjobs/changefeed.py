"""Which records of the local Jobs service changed, for readers that follow it live (the console's streams).

The service publishes the record keys each call changed (the same keys its store writes). Each reader
keeps only the topics it cares about, coalesced: a record that changes a hundred times before the reader
looks is one entry, and a reader never holds more entries than there are records it follows.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

# A record key as the model marks it: ("job", job_id), ("thing", name), ("group", name), ("meta", ...),
# or ("execution", '["JOB", "THING", N]').
Key = tuple[str, str]
# A change as readers see it: ("job", job_id), ("thing", name), ("group", name), or
# ("execution", (job_id, thing, execution_number)).
Change = tuple[str, Any]
# What a reader follows: the topic a change counts as (changes with equal topics coalesce), or None to ignore it.
Topic = Callable[[Change], Any]


def parse_key(key: Key) -> Change | None:
    kind, name = key
    if kind == "execution":
        job_id, thing, number = json.loads(name)
        return ("execution", (job_id, thing, number))
    if kind in ("job", "thing", "group"):
        return (kind, name)
    return None


class Subscription:
    """One reader's coalesced topics, taken in the order they first changed."""

    def __init__(self, feed: ChangeFeed, topic: Topic) -> None:
        self.feed = feed
        self.topic = topic
        self.topics: dict[Any, None] = {}

    def take(self, timeout: float) -> list[Any] | None:
        """The topics changed since the last take, waiting up to `timeout` for one ([] if none); None once closed."""
        with self.feed.cond:
            self.feed.cond.wait_for(lambda: self.topics or self not in self.feed.readers, timeout)
            if self not in self.feed.readers:
                return None
            topics, self.topics = list(self.topics), {}
            return topics

    def wait_closed(self, timeout: float) -> bool:
        """Wait up to `timeout` unless the feed closes first (a reader's pause between batches); True if closed."""
        with self.feed.cond:
            return self.feed.cond.wait_for(lambda: self not in self.feed.readers, timeout)

    def close(self) -> None:
        with self.feed.cond:
            self.feed.readers.discard(self)
            self.feed.cond.notify_all()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeFeed:
    """Fans the service's changed record keys out to subscriptions; costs nothing while nobody subscribes."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.readers: set[Subscription] = set()

    def subscribe(self, topic: Topic) -> Subscription:
        subscription = Subscription(self, topic)
        with self.cond:
            self.readers.add(subscription)
        return subscription

    def publish(self, keys: Iterable[Key]) -> None:
        """Called by the service, under its lock, with the keys of the records one call changed."""
        if not self.readers:
            return
        changes = [c for c in map(parse_key, keys) if c is not None]
        if not changes:
            return
        with self.cond:
            woken = False
            for reader in self.readers:
                for change in changes:
                    topic = reader.topic(change)
                    if topic is not None:
                        reader.topics[topic] = None
                        woken = True
            if woken:
                self.cond.notify_all()

    def close(self) -> None:
        """Ends every subscription (the service is stopping): their takes return None."""
        with self.cond:
            self.readers.clear()
            self.cond.notify_all()
