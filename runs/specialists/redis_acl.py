"""Least privilege on Redis: the ACL user of each kind of CMO process (Redis 7.0 or later).

Each process connects as its own user (``CMO_REDIS_URL_<ROLE>``, cmo_site/settings.py), allowed only the
commands it sends and the keys it sends them to; ``manage.py redis_acl`` prints the users as an ACL file.

- ``web`` (daphne): the channel layer's groups and process channels (live pages, the readiness check), and
  sends to the workers' channel (wake-ups) without reading it; of the specialists' keys, the counts shown on
  /metrics and in the admin, their dead letters (read, re-drive) and decision notices to their streams. It
  reads no request on a specialist's stream and no reply.
- ``worker``: the channel layer and the workers' channel (it consumes the wake-ups); it publishes to every
  specialist's stream under the specialist's cap (Lua over the stream, its in-flight set and its held queue)
  and the delayed re-invocations, and consumes the replies stream as the engine's group (dead letters to
  the replies' DLQ). It reads no specialist's stream.
- ``scheduler``: the channel layer as the web uses it (wake-ups, live updates, the start-up check) and
  decision notices for the approvals it expires.
- ``specialist`` NAME: its own stream as the specialists' group (read, claim, acknowledge), its dead letters
  and the replies stream, both write-only. No other specialist's stream, no channel-layer key, no script.

Every user has the connection's own commands (AUTH and HELLO, SELECT, PING, CLIENT SETNAME, and CLIENT SETINFO
on Redis 7.2+; none of @dangerous, no CLIENT TRACKING) and MULTI/EXEC (redis-py's pipelines), no pub/sub
channel (channels-redis's layer does not use pub/sub), and nothing else: no KEYS, SCAN, FLUSHALL, CONFIG, ACL.

A command runs only if one selector allows both the command and every key it names (the rules outside
parentheses are the first selector), so a specialist's XADD reaches its dead letters and the replies but not
its own stream, and the web's XADD the streams but not the replies. A script (EVAL) calls only what its user
could call directly: Redis checks each ``redis.call`` against the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runs.specialists.streams import DELAYED, REPLIES, dlq_key, held_key, inflight_key, stream_key

ROLES = ("web", "worker", "scheduler")
SPECIALIST = "specialist"

# AgentId's name (runs/schemas/AgentId.json): no space and no glob character, so a name is its own key pattern.
SPECIALIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,149}$")
_GLOB = re.compile(r"([*?\[\]\\])")

CONNECTION = ["+@connection", "-@dangerous", "-client|tracking", "+multi", "+exec", "+discard"]
# channels-redis's RedisChannelLayer: sends, group sends (a pipeline and a Lua script), receives (a clean-up
# script, BZPOPMIN and the in-flight backup), group membership. Not KEYS: its flush() is for tests.
LAYER = ["+zadd", "+zrem", "+zrange", "+zremrangebyscore", "+zcount", "+zpopmin", "+bzpopmin", "+expire", "+del"]
LAYER_SEND = ["+zremrangebyscore", "+zcount", "+zadd", "+expire"]  # send() to a channel, without receiving
# runs.specialists.streams.StreamConsumer on a stream of its group.
CONSUME = ["+xgroup|create", "+xreadgroup", "+xautoclaim", "+xclaim", "+xpending", "+xack"]
# StreamTransport.publish_capped/release/publish_later/publish_due: the scripts over a stream, its in-flight
# set, its held queue (a sorted set, a hash of bodies and a counter) and the delayed queue.
PUBLISH = [
    "+eval",
    "+xgroup|create",
    "+xadd",
    "+sismember",
    "+scard",
    "+sadd",
    "+srem",
    "+hexists",
    "+hset",
    "+hget",
    "+hdel",
    "+zadd",
    "+zrange",
    "+zrangebyscore",
    "+zrem",
    "+incr",
]


def glob_escape(text: str) -> str:
    """``text`` as a Redis key pattern that matches only itself."""
    return _GLOB.sub(r"\\\1", text)


def selector(*rules: str) -> str:
    return "(" + " ".join(rules) + ")"


@dataclass(frozen=True)
class LayerKeys:
    """The channel layer's keys (channels-redis): a channel's is the prefix and its name, without what follows
    "!" in a process channel's name ("<prefix>specific.<client>!", a sorted set, and its "$inflight" backup);
    a group's is "<prefix>:group:<group>"."""

    prefix: str = "asgi"
    worker_channel: str = "cmo.runs"

    @property
    def process_channels(self) -> str:
        return glob_escape(f"{self.prefix}specific.") + "*"  # channels' new_channel(): "specific.<client>!<id>"

    @property
    def groups(self) -> str:
        return glob_escape(f"{self.prefix}:group:") + "*"

    @property
    def workers(self) -> str:
        return glob_escape(f"{self.prefix}{self.worker_channel}")

    @property
    def workers_backup(self) -> str:
        return glob_escape(f"{self.prefix}{self.worker_channel}$inflight")


def role_rules(role: str, layer: LayerKeys) -> list[str]:
    """The ACL rules (after ``user NAME reset on <password>``) of the web, a worker or a scheduler."""
    streams = glob_escape(stream_key("")) + "*"  # every specialist's stream and the keys beside it
    dead_letters = glob_escape(stream_key("")) + "*" + glob_escape(dlq_key("")[len(stream_key("")) :])
    channel_layer = [f"~{layer.process_channels}", f"~{layer.groups}", *LAYER, "+eval"]
    notices = selector(f"%W~{streams}", "+xgroup|create", "+xadd")
    if role == "web":
        return [
            *channel_layer,
            selector(f"~{layer.workers}", *LAYER_SEND),
            selector(f"%R~{streams}", "+xlen", "+xpending", "+scard", "+zcard"),
            selector(f"%R~{dead_letters}", "+xrange"),
            notices,
            selector(f"%W~{dead_letters}", "+xdel"),
        ]
    if role == "worker":
        return [
            *channel_layer,
            f"~{layer.workers}",
            f"~{layer.workers_backup}",
            selector(f"~{streams}", f"~{glob_escape(DELAYED)}", *PUBLISH),
            selector(f"~{glob_escape(REPLIES)}", *CONSUME),
            selector(f"%W~{glob_escape(REPLIES + ':dlq')}", "+xadd"),  # runs.worker.replies.ReplyListener's DLQ
        ]
    if role == "scheduler":
        return [*channel_layer, selector(f"~{layer.workers}", *LAYER_SEND), notices]
    raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)}; specialists: specialist_rules)")


def specialist_rules(name: str) -> list[str]:
    """The ACL rules of specialist ``name``'s processes (``run_specialist NAME``)."""
    return [
        selector(f"~{stream_key(name)}", *CONSUME),
        selector(f"%W~{dlq_key(name)}", f"%W~{glob_escape(REPLIES)}", "+xadd"),
    ]


def specialist_name_refusal(name: str) -> str:
    """Why ``name`` cannot have a user of its own, or "" if it can.

    A name is refused when its stream is a key of another specialist's (``x:dlq`` is the dead letters of
    ``x``): its user would read and acknowledge what is not its own.
    """
    if not SPECIALIST_NAME.fullmatch(name):
        return f"{name!r} is not a specialist name (letters, digits and _.:@+-, at most 150)"
    for key in (dlq_key, inflight_key, held_key, lambda n: held_key(n) + ":bodies", lambda n: held_key(n) + ":seq"):
        suffix = key("")[len(stream_key("")) :]
        if name.endswith(suffix) and name != suffix:
            return f"the stream of {name!r} is a key of specialist {name[: -len(suffix)]!r} ({stream_key(name)})"
    return ""


@dataclass(frozen=True)
class AclUser:
    """One Redis user: ``role`` is web, worker, scheduler or specialist (then ``specialist`` is its name)."""

    role: str
    name: str
    rules: tuple[str, ...]
    specialist: str = ""

    def line(self, passwords: list[str]) -> str:
        """The ACL file's line; each of ``passwords`` is ">password" or "#<its SHA-256 in hex>".

        ``reset`` first, so that ``ACL SETUSER`` with the same words replaces an existing user's rules
        (SETUSER adds to them otherwise), as loading the file does.
        """
        if not passwords:
            raise ValueError(f"user {self.name} needs a password")
        head = ["user", self.name, "reset", "on", *passwords, "resetchannels", "-@all", *CONNECTION]
        return " ".join([*head, *self.rules])


def acl_users(*, user_prefix: str, specialists: list[str], layer: LayerKeys) -> list[AclUser]:
    """The users of every role, then one per specialist name (``<prefix>specialist-<name>``)."""
    users = [AclUser(role, f"{user_prefix}{role}", tuple(role_rules(role, layer))) for role in ROLES]
    for name in specialists:
        refusal = specialist_name_refusal(name)
        if refusal:
            raise ValueError(refusal)
        users.append(AclUser(SPECIALIST, f"{user_prefix}specialist-{name}", tuple(specialist_rules(name)), name))
    for user in users:
        if not user.name or any(ch.isspace() for ch in user.name):
            raise ValueError(f"{user.name!r} is not a Redis user name (no spaces)")
    return users
