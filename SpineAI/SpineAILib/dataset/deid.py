"""De-identification for dataset exports: a site key, keyed pseudonyms for UIDs and cases.

What leaves in an export is pixels, geometry and annotations; nothing is copied from a
DICOM header, a report or a file name. Where a link must survive (the same study or
series exported twice, into this dataset or another one, must come out under the same
name), its UID is replaced by an HMAC-SHA256 of the UID under a **site key**:

* the key is a random 256-bit secret kept outside every dataset, in
  ``~/.config/spineai/deidentify.key`` (``$SPINEAI_DEID_KEY_FILE`` or ``key_file=``
  choose another file), created on first use, readable by its owner only;
* the same key gives the same pseudonyms in every export of this site, so cases stay
  linked across exports; whoever holds only a dataset cannot test guessed UIDs
  against the pseudonyms (a salt stored in dataset.json would allow exactly that, and
  would link cases only inside one dataset);
* dataset.json records the key's fingerprint (an HMAC of a fixed text, not the key), so
  ``--add`` refuses to mix pseudonyms made under two keys.
"""

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from SpineAILib.errors import InputError, OutputError

KEY_ENV = "SPINEAI_DEID_KEY_FILE"
KEY_BYTES = 32


def default_key_file():
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "spineai" / "deidentify.key"


def key_file_path(key_file=None):
    return Path(key_file or os.environ.get(KEY_ENV) or default_key_file()).expanduser()


def load_key(key_file=None, create=True):
    """The site key (bytes); created (0600, never overwritten) when ``create`` and absent."""
    path = key_file_path(key_file)
    if not path.exists():
        if not create:
            raise InputError(f"{path}: no de-identification key file")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two exports starting at once must not make two keys
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as error:
            raise OutputError(f"{path}: cannot create the de-identification key ({error.strerror or error})") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(KEY_BYTES) + "\n")
    try:
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except OSError as error:
        raise InputError(f"{path}: cannot read the de-identification key ({error.strerror or error})") from None
    except ValueError:
        raise InputError(f"{path}: the de-identification key must be hex text") from None
    if len(key) < 16:
        raise InputError(f"{path}: the de-identification key is too short (at least 16 bytes of hex)")
    return key


def _mac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def fingerprint(key):
    """Names the key without revealing it (recorded in dataset.json)."""
    return _mac(key, "spineai-deidentify-key-fingerprint").hex()[:16]


def pseudonym_uid(key, uid):
    """A DICOM-valid UID (2.25 root: an integer from 128 bits) standing for ``uid``; None for no UID."""
    uid = str(uid or "").strip()
    if not uid:
        return None
    return "2.25." + str(int.from_bytes(_mac(key, "uid:" + uid)[:16], "big"))


def case_key(key, identity):
    """The dataset's key for a case: one per series (or, without UIDs, per pixel content)."""
    return _mac(key, "case:" + identity).hex()[:32]


def order_key(seed, key_text):
    """Seeded, source-order-free position of a case (for split assignment)."""
    return hashlib.sha256(f"{seed}:{key_text}".encode()).hexdigest()
