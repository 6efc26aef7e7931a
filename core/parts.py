"""A sharded output's ``<out>.parts/`` folder: one file a shard, written atomically as each is done,
and ``settings.json``, what they were made with. A run that is stopped and run again with the same
settings does only the shards that are missing; with other settings it stops and says which differ."""

from __future__ import annotations

import json
import os

from .atomic import write_json_atomic
from .errors import UserError


def differing(was: dict, now: dict) -> list[str]:
    """The keys whose values differ between two settings."""
    return sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))


def check_settings(parts: str, settings: dict, error: type[UserError] = UserError) -> None:
    """The shards in ``parts`` were made with ``settings`` (or none are there yet: then it records them)."""
    path = os.path.join(parts, "settings.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            was = json.load(f)
        if was != settings:
            raise error(f"{parts}: shards made with other settings ({', '.join(differing(was, settings))} differ); "
                        "delete that folder to start again, or run with the settings it was made with")
    else:
        os.makedirs(parts, exist_ok=True)
        write_json_atomic(path, settings)
