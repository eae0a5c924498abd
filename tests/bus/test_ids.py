"""Message ids: the format of ``uuid.uuid4().hex`` (version 4, RFC 4122 variant), all distinct."""

from __future__ import annotations

import uuid

from fogmesh.protocol import new_id


def test_ids_are_uuid4_hex_and_distinct() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:2_000]:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value  # 32 lower-case hex characters, no dashes
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # every bit outside the fixed version and variant bits varies
    fixed = (0xF << 76) | (0x3 << 62)
    ones = zeros = 0
    for value in ids:
        n = int(value, 16)
        ones |= n
        zeros |= ~n
    assert (ones & zeros) | fixed == (1 << 128) - 1
