"""A model named by a hub id, pinned to a revision, found in the local hub cache (offline).

`rlvr init --base Qwen/Qwen2.5-Math-7B@<revision>` records the snapshot directory of that
revision in the Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
~/.cache/huggingface/hub) as the model's path, and `org/name@<commit>` beside it, so every later
stage reads a plain local directory whose content DVC and the part fingerprints hash. Nothing is
downloaded: a revision that is not in the cache is an error that says how to fetch it.
"""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

HUB_ID = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)@([\w./-]+)$")


def resolve_model_path(text: str) -> tuple[str, str]:
    """(local directory, `org/name@<commit>` or "") for a model argument: a directory, or a
    hub id pinned with `@<revision>` (a branch, tag or commit in the local hub cache)."""
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve()), ""
    match = HUB_ID.match(text)
    if match is None:
        if "/" in text and not text.startswith((".", "/")):
            raise ValueError(f"model {text!r}: not a directory; a hub id must be pinned to a "
                             f"revision, e.g. {text}@main (or a commit hash)")
        raise ValueError(f"model {text!r}: no such directory")
    repo, revision = match.groups()
    try:
        snapshot = Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as err:
        raise ValueError(f"model {text!r}: revision {revision!r} of {repo} is not in the local "
                         f"hub cache ({type(err).__name__}); fetch it where the hub is reachable "
                         f"(`hf download {repo} --revision {revision}`) or give a directory"
                         ) from None
    return str(snapshot), f"{repo}@{snapshot.name}"
