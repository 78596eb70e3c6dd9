"""The GPU ledger's choices (core/ledger.py): pure, over an inventory and the holders."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.core.exceptions import GPUUnavailableError
from jupyter_mlcontainer.core.gpus import GPURequest, parse_gpus
from jupyter_mlcontainer.core.ledger import (
    GPUHolder,
    GPUsBusyError,
    allocate,
    lost_gpus,
    parse_inventory,
    parse_mig_listing,
    sortable_time,
)

SMI = """0, GPU-aaaa, NVIDIA H200, 143771 MiB
1, GPU-bbbb, NVIDIA H200, 143771 MiB
2, GPU-cccc, NVIDIA H200, 143771 MiB
3, GPU-dddd, NVIDIA H200, 143771 MiB
"""
INVENTORY = parse_inventory(SMI)


def held(
    user: str, *uuids: str, created: str = "2026-12-02T10:00:00.1Z", cid: str = ""
) -> GPUHolder:
    return GPUHolder(cid or f"c-{user}-{'-'.join(uuids)}", "k", user, created, uuids)


def test_the_inventory_is_read_as_nvidia_smi_writes_it():
    assert [d.uuid for d in INVENTORY] == ["GPU-aaaa", "GPU-bbbb", "GPU-cccc", "GPU-dddd"]
    assert INVENTORY[0].index == "0" and INVENTORY[0].name == "NVIDIA H200"
    assert INVENTORY[0].memory_total == 143771 * 2**20
    # Lines that are no GPU (a warning, an empty line) are left out.
    assert parse_inventory("No devices were found\n\n") == ()


def test_a_count_gets_free_gpus_by_uuid_the_least_used_first():
    holders = [held("alice", "GPU-aaaa")]
    assert allocate(parse_gpus(1), INVENTORY, holders).ids == ("GPU-bbbb",)
    assert allocate(parse_gpus(2), INVENTORY, holders).ids == ("GPU-bbbb", "GPU-cccc")
    # Shared up to 2 kernels per GPU: the unused ones still come first.
    assert allocate(parse_gpus(1), INVENTORY, holders, sharing=2).ids == ("GPU-bbbb",)


def test_four_kernels_asking_one_gpu_get_four_different_ones():
    holders: list[GPUHolder] = []
    for n in range(4):
        granted = allocate(parse_gpus(1), INVENTORY, holders)
        holders.append(held(f"user{n}", *granted.ids))
    assert sorted(u for h in holders for u in h.uuids) == [d.uuid for d in INVENTORY]
    with pytest.raises(GPUsBusyError) as busy:
        allocate(parse_gpus(1), INVENTORY, holders)
    message = str(busy.value)
    assert "all 4 GPUs of this host are in use: user0 ×1, user1 ×1, user2 ×1, user3 ×1" in message
    assert "gpus='none'" in message


def test_auto_is_one_free_gpu_and_the_cpu_when_none_is_free():
    assert allocate(parse_gpus("auto"), INVENTORY, []).ids == ("GPU-aaaa",)
    everyone = [held("bob", d.uuid) for d in INVENTORY]
    assert allocate(parse_gpus("auto"), INVENTORY, everyone) == GPURequest("none")


def test_all_and_ids_need_their_gpus_free():
    assert allocate(parse_gpus("all"), INVENTORY, []).ids == tuple(d.uuid for d in INVENTORY)
    holders = [held("alice", "GPU-cccc"), held("alice", "GPU-dddd"), held("carol", "GPU-aaaa")]
    with pytest.raises(GPUsBusyError, match="alice ×2, carol ×1"):
        allocate(parse_gpus("all"), INVENTORY, holders)
    assert allocate(parse_gpus(["1"]), INVENTORY, holders).ids == ("GPU-bbbb",)  # an index
    with pytest.raises(GPUsBusyError, match="in use: alice ×1"):
        allocate(parse_gpus("GPU-cccc"), INVENTORY, holders)
    with pytest.raises(GPUUnavailableError, match="no GPU '7'; it has 0 \\(GPU-aaaa\\)"):
        allocate(parse_gpus(["7"]), INVENTORY, [])


def test_more_gpus_than_the_host_has_says_how_many_it_has():
    with pytest.raises(GPUUnavailableError, match="this host has 4: ask for at most 4") as e:
        allocate(parse_gpus(5), INVENTORY, [])
    assert not isinstance(e.value, GPUsBusyError)


def test_without_an_inventory_or_gpus_the_request_is_unchanged():
    assert allocate(parse_gpus(2), (), []) == GPURequest("count", count=2)
    assert allocate(parse_gpus("none"), INVENTORY, []) == GPURequest("none")


def test_two_servers_that_chose_one_gpu_at_once_agree_on_who_keeps_it():
    first = held("alice", "GPU-aaaa", created="2026-12-02T10:00:00.100000001Z", cid="z-first")
    second = held("bob", "GPU-aaaa", created="2026-12-02T10:00:00.100000002Z", cid="a-second")
    both = [second, first]
    assert lost_gpus("z-first", ["GPU-aaaa"], both, sharing=1) == []
    assert lost_gpus("a-second", ["GPU-aaaa"], both, sharing=1) == ["GPU-aaaa"]
    assert lost_gpus("a-second", ["GPU-aaaa"], both, sharing=2) == []
    # The earlier one did not see the later one: it keeps its GPU either way.
    assert lost_gpus("z-first", ["GPU-aaaa"], [first], sharing=1) == []


def test_creation_times_are_ordered_as_times_not_as_text():
    # Go drops a fraction's trailing zeros: as text, the earlier "…00.10375Z" sorts last.
    first = held("alice", "GPU-aaaa", created="2026-12-02T10:00:00.10375Z", cid="z-first")
    second = held("bob", "GPU-aaaa", created="2026-12-02T10:00:00.103754723Z", cid="a-second")
    whole = held("carol", "GPU-aaaa", created="2026-12-02T10:00:00Z", cid="m-whole")
    assert lost_gpus("a-second", ["GPU-aaaa"], [first, second], sharing=1) == ["GPU-aaaa"]
    assert lost_gpus("z-first", ["GPU-aaaa"], [first, second], sharing=1) == []
    assert lost_gpus("z-first", ["GPU-aaaa"], [first, whole], sharing=1) == ["GPU-aaaa"]
    assert sortable_time("2026-12-02T10:00:00.5+01:00") == "2026-12-02T10:00:00.500000000+01:00"


def test_mig_instances_are_read_from_the_listing():
    listing = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)
  MIG 1g.5gb      Device  0: (UUID: MIG-0000)
  MIG 3g.20gb     Device  1: (UUID: MIG-0001)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)
"""
    devices = parse_mig_listing(listing)
    assert [(d.index, d.uuid) for d in devices] == [("0:0", "MIG-0000"), ("0:1", "MIG-0001")]
    assert devices[1].name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    assert devices[1].memory_total == 20 * 2**30
    assert allocate(parse_gpus(1), devices, []).ids == ("MIG-0000",)


def test_granted_gpus_are_described_short():
    granted = allocate(parse_gpus(2), INVENTORY, [])
    assert granted.describe() == "2 GPUs (GPU-aaaa, GPU-bbbb)"  # the status bar's badge
