"""A file dropped (or submitted) under its provider name keeps its original in the archive
beside the uploaded file of that name, and results read the original."""

from __future__ import annotations

import io
from pathlib import Path

from sftpd_agent.pipeline.results import write_results
from sftpd_agent.remote.local import LocalRemote
from tests.test_publication import World

NAME = "SEND-12345-20261123-1000-promo.csv"
ORIGINAL = ("IDREMOTE;MSISDN;OADC;MSG\r\n"
            "A1;06 12 34 56 01;Shop;Bonjour\r\n"
            "A2;0612;Shop;Bonjour\r\n"            # invalid: not uploaded
            "A3;+33612345601;Shop;Bonjour\r\n"    # duplicate of A1
            "A4;0612345604;Shop;Bonjour\r\n")


async def test_the_original_is_kept_beside_the_uploaded_file_of_its_name(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    world.settings = world.settings.model_copy(update={"campaign": world.settings.campaign
                                                       .model_copy(update={
                                                           "max_invalid_percent": 50})})
    world.restart()
    campaign = world.campaigns.validate(world.campaigns.take(world.drop(NAME, ORIGINAL)))
    (part,) = world.campaigns.prepare(campaign) or []
    assert part.remote_name == NAME
    await world.publisher.round(LocalRemote(world.provider))
    campaign = world.store.campaign(campaign.id)
    folder = world.campaigns.archive(campaign)
    assert folder is not None
    assert (folder / f"original-{NAME}").read_bytes() == ORIGINAL.encode()
    uploaded = (folder / NAME).read_text(encoding="utf-8").splitlines()
    assert [line.split(";")[0] for line in uploaded] == ["A1", "A4"]
    out = io.BytesIO()
    figures = write_results(world.store, world.settings, campaign, out)
    rows = out.getvalue().decode().splitlines()[1:]
    assert [row.split(";")[:3] for row in rows] == [
        ["A1", "+33612345601", "pending"], ["A2", "0612", "invalid"],
        ["A3", "+33612345601", "duplicate"], ["A4", "+33612345604", "pending"]]
    assert figures.rows == 4
