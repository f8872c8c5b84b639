"""PostgreSQL client encodings and the Python codecs that read text sent in them.

PostgreSQL converts a client's text from ``client_encoding`` to the server encoding before it
parses it; a gateway that parses the same text must decode it the same way first. Decoding (not
byte scanning) is what keeps multi-byte encodings whose second byte can be a backslash or a
quote (SJIS, BIG5, GBK, UHC, JOHAB, GB18030, SHIFT_JIS_2004) from splitting a string literal
where the server would not.

Sans-I/O and pure: used by ``gateway/proxy`` (start-up and the relay) to pick the codec from the
upstream's ``client_encoding`` ParameterStatus and to decode Query/Parse/Bind/Execute text.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RemoteProtocolError

# Every client encoding PostgreSQL 15 accepts (canonical names, as ParameterStatus reports
# them) that Python has a codec for. SJIS is PostgreSQL's Shift JIS with the Microsoft (NEC
# and IBM) extensions in its conversion tables, which is Python's cp932.
PYTHON_CODECS: dict[str, str] = {
    "UTF8": "utf-8", "BIG5": "big5", "EUC_CN": "gb2312", "EUC_JP": "euc_jp",
    "EUC_JIS_2004": "euc_jis_2004", "EUC_KR": "euc_kr", "GB18030": "gb18030", "GBK": "gbk",
    "ISO_8859_5": "iso8859_5", "ISO_8859_6": "iso8859_6", "ISO_8859_7": "iso8859_7",
    "ISO_8859_8": "iso8859_8", "JOHAB": "johab", "KOI8R": "koi8_r", "KOI8U": "koi8_u",
    "LATIN1": "latin_1", "LATIN2": "iso8859_2", "LATIN3": "iso8859_3", "LATIN4": "iso8859_4",
    "LATIN5": "iso8859_9", "LATIN6": "iso8859_10", "LATIN7": "iso8859_13",
    "LATIN8": "iso8859_14", "LATIN9": "iso8859_15", "LATIN10": "iso8859_16",
    "SHIFT_JIS_2004": "shift_jis_2004", "SJIS": "cp932", "UHC": "cp949",
    "WIN866": "cp866", "WIN874": "cp874", "WIN1250": "cp1250", "WIN1251": "cp1251",
    "WIN1252": "cp1252", "WIN1253": "cp1253", "WIN1254": "cp1254", "WIN1255": "cp1255",
    "WIN1256": "cp1256", "WIN1257": "cp1257", "WIN1258": "cp1258",
}  # fmt: skip
# Client encodings without a Python codec. Every byte of their multi-byte characters has the
# high bit set, so text that is pure ASCII means the same in them as in ASCII: such text is
# read; any other byte is refused, since the gateway cannot know which characters it spells.
ASCII_ONLY = frozenset({"EUC_TW", "MULE_INTERNAL"})


class EncodingRefused(RemoteProtocolError):
    """Text the gateway cannot read in the session's client encoding."""

    def __init__(self, message: str) -> None:
        # character_not_in_repertoire, as PostgreSQL answers bytes invalid in the encoding
        super().__init__(message, sqlstate="22021")


@dataclass(frozen=True, slots=True)
class ClientEncoding:
    """How to read a session's text: the PostgreSQL name and the Python codec."""

    name: str
    codec: str
    ascii_only: bool = False

    def decode(self, data: bytes) -> str:
        """The text as PostgreSQL reads it; raises EncodingRefused where it would not."""
        try:
            return data.decode(self.codec)
        except UnicodeDecodeError as e:
            raise self._refusal(data[e.start:max(e.end, e.start + 1)]) from e

    def _refusal(self, sequence: bytes) -> EncodingRefused:
        if self.ascii_only:
            return EncodingRefused(
                f"phigate: client_encoding {self.name} has no Python codec, so only ASCII "
                "text can be checked; use client_encoding UTF8 for other characters")
        shown = " ".join(f"0x{b:02x}" for b in sequence)
        return EncodingRefused(f'invalid byte sequence for encoding "{self.name}": {shown}')


UTF8 = ClientEncoding("UTF8", "utf-8")


def client_encoding(name: str, server_encoding: str = "UTF8") -> ClientEncoding | None:
    """The reader for ``client_encoding`` ``name``; None if PostgreSQL has no such encoding.

    SQL_ASCII means "no conversion": the server takes the bytes as its own encoding."""
    canonical = name.upper()
    if canonical == "SQL_ASCII":
        if server_encoding.upper() in ("SQL_ASCII", name.upper()):
            return ClientEncoding("SQL_ASCII", "utf-8")  # bytes the server never checks
        return client_encoding(server_encoding)
    codec = PYTHON_CODECS.get(canonical)
    if codec is not None:
        return ClientEncoding(canonical, codec)
    if canonical in ASCII_ONLY:
        return ClientEncoding(canonical, "ascii", ascii_only=True)
    return None
