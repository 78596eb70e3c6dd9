"""The gateway's tokens file: which user holds which token, who is an admin, which uid.

One user a line, words separated by spaces; ``#`` starts a comment::

    # NAME   TOKEN HASH          OPTIONS
    alice    sha256:9f86d08…     uid=4501
    bob      sha256:60303ae…     uid=4502:4502
    carol    sha256:fd61a03…     admin

The file holds only the SHA-256 of each token (``jupyter mlcontainer gateway-token NAME``
makes a token and its line), so reading it does not give anyone a way in; it must still be
readable and writable by its owner alone, since whoever can write it can add a user.
``uid=UID[:GID]`` is the account a user's kernels run as; without it, the system account of
the same name.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass

#: The only hash the file holds (``sha256:`` and 64 hex digits).
HASH_PREFIX = "sha256:"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.@-]{0,63}")
_HASH = re.compile(r"sha256:([0-9a-f]{64})")
_IDS = re.compile(r"uid=(\d+)(?::(\d+))?")


class TokensFileError(ValueError):
    """The tokens file cannot be used: missing, unsafe permissions, or a line that is wrong."""


@dataclass(frozen=True)
class Account:
    """One line of the tokens file."""

    name: str
    token_hash: str
    admin: bool = False
    uid: int | None = None
    gid: int | None = None


def hash_token(token: str) -> str:
    """The form a token takes in the file: ``sha256:`` and its hex digest."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe: it travels in ``?token=`` too)."""
    return secrets.token_urlsafe(32)


def line_for(name: str, token: str, admin: bool = False, uid: str | None = None) -> str:
    """The tokens file's line for ``name`` holding ``token``."""
    words = [name, hash_token(token)]
    if uid:
        words.append(f"uid={uid}")
    if admin:
        words.append("admin")
    line = " ".join(words)
    parse_line(line, 0)  # the same rules as reading it back
    return line


def check_private(path: str) -> None:
    """Refuse a tokens file that other users may read or write (or that is not a file)."""
    try:
        st = os.stat(path)
    except OSError as e:
        msg = f"cannot read the gateway's tokens file {path}: {e.strerror}"
        raise TokensFileError(msg) from None
    if not stat.S_ISREG(st.st_mode):
        msg = f"the gateway's tokens file {path} is not a regular file"
        raise TokensFileError(msg)
    if st.st_mode & 0o077:
        msg = (
            f"the gateway's tokens file {path} is open to other users (mode "
            f"{stat.filemode(st.st_mode)}): whoever can write it can add a user, and its hashes "
            f"should stay private. Run `chmod 600 {path}`; the gateway does not start until then."
        )
        raise TokensFileError(msg)


def parse_line(line: str, number: int) -> Account | None:
    """One line's account, None for a blank line or a comment."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    where = f"line {number}" if number else "the line"
    if len(words) < 2:
        msg = f"{where}: expected `NAME sha256:HASH [uid=UID[:GID]] [admin]`"
        raise TokensFileError(msg)
    name, token_hash, *options = words
    if not _NAME.fullmatch(name):
        msg = f"{where}: {name!r} is not a user name (letters, digits, _ . @ -)"
        raise TokensFileError(msg)
    if not _HASH.fullmatch(token_hash):
        msg = (
            f"{where}: the token of {name} must be stored as sha256:<64 hex digits> (the file "
            "never holds tokens themselves; `jupyter mlcontainer gateway-token` makes the line)"
        )
        raise TokensFileError(msg)
    admin, uid, gid = False, None, None
    for option in options:
        ids = _IDS.fullmatch(option)
        if option == "admin":
            admin = True
        elif ids:
            uid = int(ids.group(1))
            gid = int(ids.group(2)) if ids.group(2) else None
        else:
            msg = f"{where}: unknown option {option!r} for {name} (uid=UID[:GID] or admin)"
            raise TokensFileError(msg)
    return Account(name, token_hash, admin, uid, gid)


def read_tokens(path: str) -> dict[str, Account]:
    """The accounts of a private tokens file, by token hash."""
    check_private(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    by_hash: dict[str, Account] = {}
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        try:
            account = parse_line(line, number)
        except TokensFileError as e:
            msg = f"{path}, {e}"
            raise TokensFileError(msg) from None
        if account is None:
            continue
        if account.name in names or account.token_hash in by_hash:
            msg = f"{path}, line {number}: a second line for {account.name} or its token"
            raise TokensFileError(msg)
        names.add(account.name)
        by_hash[account.token_hash] = account
    return by_hash
