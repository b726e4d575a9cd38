"""Shared test utilities for hostile files: editing a safetensors header in place.

Test files import it as ``from file_edits import ...`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import json


def rewrite_header(path, edit):
    """Edit the JSON header of a safetensors file in place, keeping its tensor bytes."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def edit_json_field(path, key, change, keep_signature=False):
    """Change the JSON held in metadata ``key`` (``change(value)`` edits it in place); the
    signature is dropped unless ``keep_signature``."""
    def edit(header):
        meta = header["__metadata__"]
        value = json.loads(meta[key])
        change(value)
        meta[key] = json.dumps(value)
        if not keep_signature:
            meta.pop("chainrule.signature")
    rewrite_header(path, edit)
