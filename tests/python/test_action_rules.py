"""Rules between an action's parameters that Asterisk enforces beyond its documentation
(amiwire/_schema/rules.py): refused before sending, valid combinations pass, check=False
opts out."""

from __future__ import annotations

import asyncio

import pytest

import amiwire
from amiwire._schema import SCHEMAS
from amiwire.client import ACTION_KEYWORDS
from amiwire._schema.rules import RULES
from amiwire.testing import Simulator

ORIGINATE_NEEDS = "Originate needs Application, or Exten with Context and Priority"


@pytest.mark.parametrize("version", ["13", "22"])
def test_every_rule_names_documented_parameters(version: str) -> None:
    for action, rules in RULES.items():
        facts = SCHEMAS[version].facts(action)
        assert facts is not None, action
        for rule in rules:
            named = {*rule.when, *(p for alternative in rule.alternatives for p in alternative)}
            assert named <= set(facts.parameters), (action, named - set(facts.parameters))
            assert "manager.c:" in rule.mirrors


@pytest.mark.parametrize("version", ["13", "22"])
def test_originate_needs_an_application_or_a_whole_extension(version: str) -> None:
    schema = SCHEMAS[version]
    with pytest.raises(amiwire.LocalProtocolError, match=rf"^{ORIGINATE_NEEDS} \(Asterisk refuses it otherwise: action_originate, manager\.c:\d+"):
        schema.check("Originate", ["Channel"], ())
    with pytest.raises(amiwire.LocalProtocolError, match=rf"{ORIGINATE_NEEDS}: Context missing .*pass check=False"):
        schema.check("Originate", ["Channel", "Exten", "Priority"], ())
    with pytest.raises(amiwire.LocalProtocolError, match=rf"{ORIGINATE_NEEDS}: Context and Priority missing"):
        schema.check("Originate", ["Channel", "exten"], ())
    # An empty value counts as not given, as in manager.c.
    with pytest.raises(amiwire.LocalProtocolError, match=ORIGINATE_NEEDS):
        schema.check("Originate", ["Channel", "Application"], (), empty=["Application"])
    # The valid combinations, in any spelling.
    assert schema.check("Originate", ["Channel", "Application"], ()) == {}
    assert schema.check("Originate", ["Channel", "Application", "Data", "Exten"], ()) == {}
    assert schema.check("Originate", ["Channel", "Exten", "Context", "Priority"], ()) == {}
    assert schema.check("originate", ["channel", "exten", "context", "priority"], ()) == {
        "channel": "Channel", "exten": "Exten", "context": "Context", "priority": "Priority",
    }


@pytest.mark.parametrize("version", ["13", "22"])
def test_redirect_and_blind_transfer(version: str) -> None:
    schema = SCHEMAS[version]
    target = ["Channel", "Exten", "Context", "Priority"]
    with pytest.raises(
        amiwire.LocalProtocolError,
        match=r"^Redirect with ExtraChannel and ExtraContext needs ExtraExten and ExtraPriority: ExtraPriority missing \(.*action_redirect, manager\.c:",
    ):
        schema.check("Redirect", [*target, "ExtraChannel", "ExtraContext", "ExtraExten"], ())
    assert schema.check("Redirect", [*target, "ExtraChannel", "ExtraContext", "ExtraExten", "ExtraPriority"], ()) == {}
    # Without ExtraContext the rule does not apply (nor does manager.c's check).
    assert schema.check("Redirect", [*target, "ExtraChannel"], ()) == {}
    with pytest.raises(amiwire.LocalProtocolError, match=r"^BlindTransfer needs Exten \(.*action_blind_transfer"):
        schema.check("BlindTransfer", ["Channel", "Context"], ())
    assert schema.check("BlindTransfer", ["Channel", "Exten"], ()) == {}


def test_the_client_refuses_before_sending_and_check_false_sends() -> None:
    async def scenario(url: str) -> None:
        async with amiwire.connect(url) as ami:
            # originate() defaults Priority to 1; Context is what is missing.
            with pytest.raises(amiwire.LocalProtocolError, match=rf"{ORIGINATE_NEEDS}: Context missing"):
                await ami.originate("Local/100@test", exten="100")
            with pytest.raises(amiwire.LocalProtocolError, match=ORIGINATE_NEEDS):
                ami.action("Originate", channel="Local/100@test", application="")
            with pytest.raises(amiwire.LocalProtocolError, match="BlindTransfer needs Exten"):
                ami.action("BlindTransfer", channel="Local/100@test")
            assert ami.stats()["pending"] == 0  # nothing was sent
            # Opt-out: the action leaves, and the server answers for itself.
            reply = await ami.action("BlindTransfer", channel="Local/100@test", check=False, raise_on_error=False)
            assert reply.response is not None
            answered = await ami.originate("Local/100@test", exten="100", context="test")
            assert answered.name == "OriginateResponse"

    with Simulator() as sim:
        asyncio.run(scenario(sim.url))


def test_a_remembered_verdict_is_the_verdict() -> None:
    # Checks are remembered per shape of call: the same call gives the same answer every
    # time, a refusal included, and a call differing only in an empty value is judged anew.
    schema = SCHEMAS["22"]
    for _ in range(3):
        assert schema.check("Getvar", ["variable"], ACTION_KEYWORDS) == {"variable": "Variable"}
        with pytest.raises(amiwire.LocalProtocolError, match="Getvar needs Variable"):
            schema.check("Getvar", ["Channel"], ACTION_KEYWORDS)
        assert schema.check("Originate", ["Channel", "Application"], ()) == {}
        with pytest.raises(amiwire.LocalProtocolError, match="Application"):
            schema.check("Originate", ["Channel", "Application"], (), empty=["Application"])
