"""Story: anyone types help and sees what they, with their roles, can do."""

from __future__ import annotations


async def test_help_lists_what_each_role_may_do(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say("practitioner1@northbridge.example", "help")
    practitioner = driver.seen("practitioner1@northbridge.example")[-1]
    assert "help" in practitioner and "whoami" in practitioner
    assert "grant" not in practitioner

    await driver.say("changelead@northbridge.example", "help")
    change = driver.seen("changelead@northbridge.example")[-1]
    assert "grant ROLE EMAIL" in change
    assert "the change team" in change


async def test_a_refusal_reads_the_same_everywhere(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say("practitioner3@northbridge.example", "grant leader practitioner4@northbridge.example")
    assert driver.seen("practitioner3@northbridge.example")[-1] == (
        "Sorry, only the change team can do that. Nothing was changed."
    )
