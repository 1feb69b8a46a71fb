"""Keyed pseudonyms: the only form in which a person's identifier is ever written.

HMAC-SHA256 under a secret key kept outside the data (see `core.config.Settings.secret`).
Without the key a pseudonym cannot be reversed or recomputed from a known id; with it, the
same person gets the same pseudonym in every export, so records join across tables and years.
Each kind of identifier has its own namespace, so a student and a teacher who happen to share
an id string never share a pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PSEUDONYM_HEX_CHARS = 24  # 96 bits: no collision in any realistic city (birthday bound ~2^48)


class Pseudonymizer:
    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("pseudonym key must be at least 16 bytes")
        self._key = key
        # Exports repeat the same ids in every table and batch: HMAC each distinct id once.
        self._cache: dict[tuple[str, str], str] = {}

    def one(self, namespace: str, identifier: str) -> str:
        identifier = identifier.strip()
        pseudonym = self._cache.get((namespace, identifier))
        if pseudonym is None:
            message = f"{namespace}:{identifier}".encode()
            pseudonym = hmac.new(self._key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]
            self._cache[(namespace, identifier)] = pseudonym
        return pseudonym

    def array(self, namespace: str, identifiers: pa.Array) -> pa.Array:
        """Pseudonymize an Arrow string column: each distinct id hashed once, then gathered."""
        text = pc.utf8_trim_whitespace(identifiers.cast(pa.string()))
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        distinct = pc.unique(text).drop_null()
        pseudonyms = pa.array([self.one(namespace, value) for value in distinct.to_pylist()], pa.string())
        return pc.take(pseudonyms, pc.index_in(text, value_set=distinct))

    def series(self, namespace: str, identifiers: pd.Series) -> pd.Series:
        """Pseudonymize a column; empty cells (missing or blank) stay empty."""
        text = identifiers.astype("string")
        # A blank cell is no identifier: hashing "" would dress an empty value up as a person.
        text = text.mask(text.str.strip().eq("").fillna(False))
        mapping = {value: self.one(namespace, value) for value in text.dropna().unique()}
        return text.map(mapping, na_action="ignore").astype("string")
