"""The ``masking:`` section of ``phigate.yaml``: the hash key and which databases share it.

Masking *rules* live in the policy files; what belongs to the gateway's own config is the
secret behind the ``hash`` strategy::

    masking:
      hash_key_file: keys/masking.key   # phigate keygen --masking-key keys/masking.key
      hash_domains:                     # databases whose pseudonyms correlate (default: none)
        clinic: care
        billing: care

Read by ``gateway/settings/config.py`` at start-up and on SIGHUP (a new key file is a key
rotation); errors name the file, line and key. See ``gateway/masking/keys.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..settings.values import Section
from .keys import HashKey, MaskingKeyError, load_key


@dataclass(frozen=True, slots=True)
class MaskingSettings:
    hash_key_file: Path | None = None
    hash_key: HashKey | None = field(default=None, repr=False)
    hash_domains: Mapping[str, str] = field(default_factory=dict)

    def domain(self, database: str) -> str:
        """The hash domain of a database (as clients name it): its own name by default."""
        return self.hash_domains.get(database, database)


def parse_masking(section: Section) -> MaskingSettings:
    section.only("hash_key_file", "hash_domains")
    path = section.optional_path("hash_key_file")
    key = None
    if path is not None:
        try:
            key = load_key(path)
        except MaskingKeyError as e:
            raise section.error("hash_key_file", f"{e} (phigate keygen --masking-key PATH "
                                                 "makes one)") from e
    domains = section.data.get("hash_domains") or {}
    if not isinstance(domains, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in domains.items()):
        raise section.error("hash_domains", "must map database names to domain names "
                                            "(databases of one domain share pseudonyms)")
    return MaskingSettings(hash_key_file=path, hash_key=key, hash_domains=dict(domains))
