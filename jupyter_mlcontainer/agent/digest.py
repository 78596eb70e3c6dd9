"""The digest of a folder: every file's path and content, in a stable order.

The runtime builder records it when it seals an injected runtime, and the bootstrap checks it
before it imports anything from that runtime. Standard library only (shipped as source).
"""

import hashlib
import os


def tree_digest(root: str) -> str:
    """SHA-256 over each file's path (relative to ``root``) and content, walked in order."""
    total = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            total.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                total.update(hashlib.sha256(f.read()).digest())
    return total.hexdigest()
