"""The information-sharing policy held as data: loading, validation, and the decisions made from it.

Policy decisions are plain functions, so most tests call them directly with the shipped policy
and hand-built children and candidate agencies; the broken-policy tests also start the real
`flagshare` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from api.policy.language import summary_warnings
from api.policy.loader import PolicyError, load_policy
from api.policy.rules import (
    Candidate,
    ChildContext,
    LawfulBasis,
    PublishRefused,
    check_publish,
    decide_recipients,
    share_rule_kinds,
)
from api.policy.schema import PlainLanguage, PlainLanguageTerm
from api.problems import ProblemError
from api.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "policies"
CONTRACT_CATEGORIES = {
    "child_protection_plan", "looked_after_child", "child_in_need",
    "unborn_child_protection_concern", "domestic_abuse_incident", "missing_episode",
    "not_brought_to_appointment", "injury_non_mobile_infant", "parental_mental_health",
    "parental_substance_misuse", "criminal_exploitation_risk", "sexual_exploitation_risk",
    "household_member_risk", "fgm_risk", "concealed_pregnancy", "elective_home_education",
    "school_exclusion",
}
BIRMINGHAM, SANDWELL = "E08000025", "E08000028"
FULL_BASIS = LawfulBasis("6(1)(e)", "9(2)(g)", "schedule1-part2-para18")


@pytest.fixture(scope="module")
def shipped():
    return load_policy(SHIPPED)


def _edit(directory: Path, name: str, old: str, new: str) -> None:
    """Replace the first occurrence of `old` in a policy file (which must contain it)."""
    path = directory / name
    text = path.read_text()
    assert old in text, f"test set-up: {old!r} not found in {name}"
    path.write_text(text.replace(old, new, 1))


def _category_yaml(publish_id: str, share_ids: list[str]) -> dict:
    """A small valid category, for extra policy files."""
    return {
        "description": "A category added by a test.",
        "publish": {
            "id": publish_id, "why": "Test publishers.", "agency_kinds": ["police"],
            "purposes": ["safeguarding"], "lawful_basis": {"article6": ["6(1)(e)"]},
        },
        "share": [
            {"id": rid, "why": "Test recipients.", "recipient_kinds": ["mash"], "scope": "area"}
            for rid in share_ids
        ],
    }


def _load_error(directory: Path) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(directory)
    return str(caught.value)


# --- the shipped policy ------------------------------------------------------------------

def test_shipped_policy_loads_with_every_contract_category(shipped):
    assert CONTRACT_CATEGORIES <= set(shipped.categories)
    assert shipped.files == ("access.yaml", "areas.yaml", "england-default.yaml",
                             "household.yaml", "plain-language.yaml")
    assert shipped.household_risk.id == "HRJ-1" and shipped.siblings.id == "SIB-1"
    assert shipped.agreements and "England" in shipped.agreements[0]
    assert shipped.defaults.transfer_pickup_working_days == 15
    # The areas of the test world are known to the policy.
    assert shipped.areas[BIRMINGHAM].name == "Birmingham"
    assert shipped.areas[SANDWELL].name == "Sandwell"


def test_every_shipped_rule_says_why_and_has_a_unique_id(shipped):
    ids = []
    for name, cat in shipped.categories.items():
        assert cat.description.strip(), name
        assert cat.share, f"{name} is shared with nobody"
        for rule in [cat.publish, *cat.share]:
            assert rule.why.strip(), f"{name}: rule {rule.id} has no why"
            ids.append(rule.id)
    assert len(ids) == len(set(ids))
    # Policy.rule finds publish and share rules by id, and nothing else.
    assert shipped.rule("DAI-PUB").agency_kinds == ["police", "childrens_social_care", "mash"]
    assert shipped.rule("DAI-HV").child_under_years == 5
    assert shipped.rule("NO-SUCH-RULE") is None


def test_shipped_policy_gives_details_only_to_social_care_and_mash(shipped):
    """DOMAIN: recipients usually get the summary; details go to social care and the MASH."""
    for cat in shipped.categories.values():
        for rule in cat.share:
            assert "summary" in rule.fields, rule.id
            if "details" in rule.fields:
                assert set(rule.recipient_kinds) <= {"childrens_social_care", "mash"}, rule.id


def test_the_app_runs_on_the_shipped_policy(policy, shipped):
    assert policy.version == shipped.version
    assert set(policy.categories) == set(shipped.categories)


def test_version_is_a_content_hash(policy_dir_copy, shipped, tmp_path):
    again = load_policy(SHIPPED)
    assert again.version == shipped.version
    assert len(shipped.version) == 16 and int(shipped.version, 16) >= 0
    # The same files elsewhere are the same policy.
    assert load_policy(policy_dir_copy).version == shipped.version
    # Any change to any file, even a comment, is a new version.
    _edit(policy_dir_copy, "plain-language.yaml", "min_summary_words: 6",
          "min_summary_words: 6  # reviewed")
    commented = load_policy(policy_dir_copy).version
    assert commented != shipped.version
    _edit(policy_dir_copy, "england-default.yaml", "acknowledge_within_hours: 72",
          "acknowledge_within_hours: 48")
    changed = load_policy(policy_dir_copy)
    assert changed.defaults.acknowledge_within_hours == 48
    assert changed.version not in (shipped.version, commented)


def test_a_partnership_may_add_a_category_in_its_own_file(policy_dir_copy, shipped):
    extra = {"categories": {"private_fostering": _category_yaml("PF-PUB", ["PF-MASH"])}}
    (policy_dir_copy / "local.yaml").write_text(yaml.safe_dump(extra))
    loaded = load_policy(policy_dir_copy)
    assert set(loaded.categories) == set(shipped.categories) | {"private_fostering"}
    assert loaded.rule("PF-MASH").recipient_kinds == ["mash"]


# --- broken policies stop start-up, naming the file and the key ---------------------------

def test_unknown_key_is_named(policy_dir_copy):
    _edit(policy_dir_copy, "england-default.yaml", "recipient_kinds: [mash]",
          "recipent_kinds: [mash]")
    message = _load_error(policy_dir_copy)
    assert "england-default.yaml" in message
    assert "categories.child_protection_plan.share.1.recipent_kinds" in message
    assert "Extra inputs are not permitted" in message


def test_typo_in_a_rule_condition_is_not_ignored(policy_dir_copy):
    """A misspelt narrowing condition must not silently widen sharing."""
    _edit(policy_dir_copy, "england-default.yaml", "child_under_years: 5",
          "child_under_year: 5")
    message = _load_error(policy_dir_copy)
    assert "england-default.yaml" in message and "child_under_year" in message


def test_bad_rule_id_is_named(policy_dir_copy):
    _edit(policy_dir_copy, "england-default.yaml", "id: DAI-PUB", "id: dai publish")
    message = _load_error(policy_dir_copy)
    assert "england-default.yaml" in message
    assert "categories.domestic_abuse_incident.publish.id" in message
    assert "dai publish" in message


def test_unknown_agency_kind_is_named(policy_dir_copy):
    _edit(policy_dir_copy, "england-default.yaml",
          "agency_kinds: [police, childrens_social_care, mash]",
          "agency_kinds: [police, social_services, mash]")
    message = _load_error(policy_dir_copy)
    assert "england-default.yaml" in message
    assert "categories.domestic_abuse_incident.publish.agency_kinds.1" in message
    assert "social_services" in message


def test_unknown_recipient_kind_and_scope_are_named(policy_dir_copy):
    _edit(policy_dir_copy, "england-default.yaml", "recipient_kinds: [police]",
          "recipient_kinds: [probation]")
    _edit(policy_dir_copy, "england-default.yaml", "scope: relationship", "scope: household")
    message = _load_error(policy_dir_copy)
    assert "share.5.recipient_kinds.0" in message and "probation" in message
    assert "share.2.scope" in message and "household" in message


def test_invalid_yaml_is_named_with_its_line(policy_dir_copy):
    (policy_dir_copy / "local.yaml").write_text("categories:\n  broken: [unclosed\n")
    message = _load_error(policy_dir_copy)
    assert "local.yaml" in message and "not valid YAML" in message
    assert "line" in message


def test_a_key_given_twice_in_one_file_is_an_error(policy_dir_copy):
    """PyYAML keeps the last of two equal keys; a pasted-in second copy would silently win."""
    text = (policy_dir_copy / "england-default.yaml").read_text()
    start = text.index("  domestic_abuse_incident:\n")
    end = text.index("  missing_episode:\n")
    (policy_dir_copy / "england-default.yaml").write_text(text + text[start:end])
    message = _load_error(policy_dir_copy)
    assert "england-default.yaml" in message and "domestic_abuse_incident" in message
    assert "duplicate key" in message


def test_yaml_anchors_and_merges_still_work(policy_dir_copy):
    """Refusing repeated keys must not refuse a merge (`<<: *anchor`) overridden by a key."""
    (policy_dir_copy / "local.yaml").write_text(
        "categories:\n"
        "  private_fostering:\n"
        "    description: A child cared for by someone who is not a close relative.\n"
        "    publish:\n"
        "      id: PF-PUB\n"
        "      why: Social care is told of private fostering arrangements.\n"
        "      agency_kinds: [childrens_social_care]\n"
        "      purposes: [safeguarding]\n"
        "      lawful_basis: {article6: ['6(1)(e)']}\n"
        "    share:\n"
        "      - &mash {id: PF-MASH, why: The MASH sees it., recipient_kinds: [mash],\n"
        "               scope: area, fields: [summary, details]}\n"
        "      - <<: *mash\n"
        "        id: PF-CSC\n"
        "        recipient_kinds: [childrens_social_care]\n")
    loaded = load_policy(policy_dir_copy)
    assert loaded.rule("PF-CSC").fields == ["summary", "details"]
    assert loaded.rule("PF-CSC").recipient_kinds == ["childrens_social_care"]
    assert loaded.rule("PF-MASH").recipient_kinds == ["mash"]


def test_hidden_editor_debris_is_not_policy(policy_dir_copy, shipped):
    (policy_dir_copy / ".#england-default.yaml").symlink_to("user@host.1234:1700000000")
    (policy_dir_copy / "._areas.yaml").write_bytes(b"\x00\x05\x16\x07 not yaml \xff")
    (policy_dir_copy / "README.md").write_text("Notes about the agreement.")
    assert load_policy(policy_dir_copy).version == shipped.version


def test_unreadable_policy_file_or_directory_is_a_policy_error(policy_dir_copy, tmp_path):
    (policy_dir_copy / "local.yaml").mkdir()
    assert "local.yaml: cannot read" in _load_error(policy_dir_copy)
    missing = tmp_path / "no-such-dir"
    assert str(missing) in _load_error(missing)


def test_duplicate_category_across_two_files_names_both(policy_dir_copy):
    extra = {"categories": {"domestic_abuse_incident": _category_yaml("LOCAL-DA", ["LOCAL-DA2"])}}
    (policy_dir_copy / "local.yaml").write_text(yaml.safe_dump(extra))
    message = _load_error(policy_dir_copy)
    assert "local.yaml: categories.domestic_abuse_incident" in message
    assert "already defined in england-default.yaml" in message
    # The same whichever file is read first.
    (policy_dir_copy / "local.yaml").rename(policy_dir_copy / "a-local.yaml")
    message = _load_error(policy_dir_copy)
    assert "england-default.yaml: categories.domestic_abuse_incident" in message
    assert "already defined in a-local.yaml" in message


def test_duplicate_rule_id_across_files_is_named(policy_dir_copy):
    extra = {"categories": {"private_fostering": _category_yaml("PF-PUB", ["DAI-MASH"])}}
    (policy_dir_copy / "local.yaml").write_text(yaml.safe_dump(extra))
    message = _load_error(policy_dir_copy)
    assert "local.yaml: categories.private_fostering" in message
    assert "DAI-MASH" in message and "england-default.yaml" in message


def test_duplicate_rule_id_within_a_category_is_named(policy_dir_copy):
    extra = {"categories": {"private_fostering": _category_yaml("PF-PUB", ["PF-1", "PF-1"])}}
    (policy_dir_copy / "local.yaml").write_text(yaml.safe_dump(extra))
    message = _load_error(policy_dir_copy)
    assert "local.yaml: categories.private_fostering" in message and "PF-1" in message


def test_a_rule_without_a_why_is_an_error(policy_dir_copy):
    extra = {"categories": {"private_fostering": _category_yaml("PF-PUB", ["PF-MASH"])}}
    extra["categories"]["private_fostering"]["share"][0]["why"] = "  "
    (policy_dir_copy / "local.yaml").write_text(yaml.safe_dump(extra))
    message = _load_error(policy_dir_copy)
    assert "local.yaml: categories.private_fostering.share.0.why" in message


def test_non_mapping_top_level_is_named(policy_dir_copy):
    (policy_dir_copy / "local.yaml").write_text("- domestic_abuse_incident\n- missing_episode\n")
    message = _load_error(policy_dir_copy)
    assert "local.yaml" in message and "top level must be a mapping" in message


def test_unknown_top_level_key_is_named(policy_dir_copy):
    (policy_dir_copy / "local.yaml").write_text("categores: {}\n")
    message = _load_error(policy_dir_copy)
    assert "local.yaml: categores" in message


def test_bad_area_code_is_named(policy_dir_copy):
    _edit(policy_dir_copy, "areas.yaml", "code: E08000025", "code: E07000025")
    message = _load_error(policy_dir_copy)
    assert "areas.yaml" in message and "areas" in message and "code" in message
    assert "E07000025" in message


def test_defaults_set_twice_are_named(policy_dir_copy):
    (policy_dir_copy / "local.yaml").write_text("defaults:\n  acknowledge_within_hours: 12\n")
    message = _load_error(policy_dir_copy)
    assert "local.yaml: defaults" in message and "england-default.yaml" in message


def test_empty_or_category_less_directory_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert str(empty) in _load_error(empty)
    (empty / "README.md").write_text("not a policy")
    assert "no policy files" in _load_error(empty)
    shutil.copy(SHIPPED / "areas.yaml", empty / "areas.yaml")
    assert "no categories" in _load_error(empty)


def _flagshare(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "flagshare"), *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def _cli_env(policy_dir: Path, db_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSHARE_")}
    env.update(FLAGSHARE_POLICY_DIR=str(policy_dir), FLAGSHARE_DATABASE_URL=f"sqlite:///{db_file}")
    return env


def test_cli_refuses_to_start_on_a_broken_policy(policy_dir_copy, tmp_path):
    _edit(policy_dir_copy, "england-default.yaml", "recipient_kinds: [mash]",
          "recipent_kinds: [mash]")
    db_file = tmp_path / "cli.db"
    result = _flagshare("db", "upgrade", env=_cli_env(policy_dir_copy, db_file), cwd=tmp_path)
    assert result.returncode != 0
    assert "invalid policy" in result.stderr
    assert str(policy_dir_copy / "england-default.yaml") in result.stderr
    assert "recipent_kinds" in result.stderr
    assert not db_file.exists(), "nothing may be done with a broken policy"


def test_cli_starts_on_the_good_copy(policy_dir_copy, tmp_path):
    """The same command on the unbroken copy succeeds, so the failure above is the policy's."""
    db_file = tmp_path / "cli.db"
    result = _flagshare("db", "upgrade", env=_cli_env(policy_dir_copy, db_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert db_file.exists()


# --- check_publish -----------------------------------------------------------------------

def test_allowed_publisher_gets_the_publish_rule(shipped):
    rule = check_publish(shipped, "domestic_abuse_incident", "police", "safeguarding", FULL_BASIS)
    assert rule.id == "DAI-PUB"
    # Article 9 and DPA 2018 are optional where the category does not require them.
    assert check_publish(shipped, "domestic_abuse_incident", "childrens_social_care",
                         "child_protection", LawfulBasis("6(1)(c)")).id == "DAI-PUB"
    assert check_publish(shipped, "injury_non_mobile_infant", "ambulance", "safeguarding",
                         LawfulBasis("6(1)(d)", "9(2)(h)", "schedule1-part1-para2")).id == "NMI-PUB"


@pytest.mark.parametrize(
    ("category", "kind", "purpose", "basis", "rule_id", "named"),
    [
        ("domestic_abuse_incident", "gp", "safeguarding", FULL_BASIS, "DAI-PUB", "gp agencies"),
        ("child_protection_plan", "police", "child_protection", FULL_BASIS, "CPP-PUB",
         "police agencies"),
        ("household_member_risk", "police", "early_help", FULL_BASIS, "HMR-PUB",
         "purpose early_help"),
        ("domestic_abuse_incident", "police", "safeguarding",
         LawfulBasis("6(1)(a)", "9(2)(g)", "schedule1-part2-para18"), "DAI-PUB",
         "lawful_basis.article6 6(1)(a)"),
        ("domestic_abuse_incident", "police", "safeguarding",
         LawfulBasis("6(1)(d)"), "DAI-PUB", "lawful_basis.article6 6(1)(d)"),
        ("parental_mental_health", "gp", "safeguarding", LawfulBasis("6(1)(e)"), "PMH-PUB",
         "lawful_basis.article9 is required"),
        ("parental_mental_health", "gp", "safeguarding",
         LawfulBasis("6(1)(e)", "9(2)(a)", "schedule1-part2-para18"), "PMH-PUB",
         "lawful_basis.article9 9(2)(a)"),
        ("elective_home_education", "education", "safeguarding",
         LawfulBasis("6(1)(e)", "9(2)(h)"), "EHE-PUB", "lawful_basis.article9 9(2)(h)"),
        ("fgm_risk", "midwifery", "safeguarding",
         LawfulBasis("6(1)(e)", "9(2)(g)", "schedule1-part1-para99"), "FGM-PUB",
         "lawful_basis.dpa2018 schedule1-part1-para99"),
    ],
)
def test_refusals_name_the_rule_and_the_field(shipped, category, kind, purpose, basis, rule_id,
                                             named):
    with pytest.raises(PublishRefused) as caught:
        check_publish(shipped, category, kind, purpose, basis)
    refused = caught.value
    assert refused.status == 403
    assert refused.rule_id == rule_id
    assert refused.extra == {"policy_rule": rule_id, "policy_version": shipped.version}
    assert rule_id in refused.detail and shipped.version in refused.detail
    assert named in refused.detail


def test_unknown_category_is_422_naming_category(shipped):
    with pytest.raises(ProblemError) as caught:
        check_publish(shipped, "general_worry", "police", "safeguarding", FULL_BASIS)
    assert not isinstance(caught.value, PublishRefused)
    assert caught.value.status == 422
    assert caught.value.errors[0]["field"] == "category"
    assert "general_worry" in caught.value.detail
    with pytest.raises(ProblemError) as caught:
        decide_recipients(shipped, "general_worry", "POLICE-A", _child(), [])
    assert caught.value.status == 422


# --- decide_recipients -------------------------------------------------------------------

def _child(areas=(BIRMINGHAM,), relationships=None, age=3, open_case=False) -> ChildContext:
    return ChildContext(
        areas=frozenset(areas),
        relationships={k: frozenset(v) for k, v in (relationships or {}).items()},
        age_years=age,
        open_case=open_case,
    )


def _by_agency(decisions) -> dict:
    by = {d.agency_id: d for d in decisions}
    assert len(by) == len(decisions), "one decision per agency"
    return by


def test_area_scope_reaches_the_childs_areas_only(shipped):
    candidates = [Candidate("CSC-A", "childrens_social_care", BIRMINGHAM),
                  Candidate("CSC-B", "childrens_social_care", SANDWELL),
                  Candidate("MASH-A", "mash", BIRMINGHAM)]
    by = _by_agency(decide_recipients(shipped, "domestic_abuse_incident", "POLICE-A", _child(),
                                      candidates))
    assert by["CSC-A"].shared and by["CSC-A"].rule_id == "DAI-CSC"
    assert by["CSC-A"].fields == ("details", "occurred_at", "period", "related_people", "summary")
    assert by["CSC-A"].reason == shipped.rule("DAI-CSC").why
    assert by["CSC-A"].acknowledge_within_hours == 24
    assert by["MASH-A"].shared and by["MASH-A"].rule_id == "DAI-MASH"
    assert not by["CSC-B"].shared and by["CSC-B"].rule_id == "DAI-CSC"
    assert "areas where the child is known" in by["CSC-B"].reason
    assert by["CSC-B"].fields == ()
    # Known in both areas: both receive.
    both = _by_agency(decide_recipients(shipped, "domestic_abuse_incident", "POLICE-A",
                                        _child(areas=(BIRMINGHAM, SANDWELL)), candidates))
    assert both["CSC-B"].shared


def test_relationship_scope_needs_a_relationship_of_the_named_kind(shipped):
    gp = Candidate("GP-A", "gp", BIRMINGHAM)
    school = Candidate("SCHOOL-A", "education", BIRMINGHAM)
    none = _by_agency(decide_recipients(shipped, "domestic_abuse_incident", "POLICE-A",
                                        _child(), [gp, school]))
    assert not none["GP-A"].shared and none["GP-A"].rule_id == "DAI-GP"
    assert "working with the child" in none["GP-A"].reason
    assert not none["SCHOOL-A"].shared
    wrong_kind = _by_agency(decide_recipients(
        shipped, "domestic_abuse_incident", "POLICE-A",
        _child(relationships={"GP-A": {"other"}, "SCHOOL-A": {"registered_gp"}}), [gp, school]))
    assert not wrong_kind["GP-A"].shared
    assert "registered gp" in wrong_kind["GP-A"].reason
    assert not wrong_kind["SCHOOL-A"].shared and "school" in wrong_kind["SCHOOL-A"].reason
    right = _by_agency(decide_recipients(
        shipped, "domestic_abuse_incident", "POLICE-A",
        _child(relationships={"GP-A": {"other", "registered_gp"}, "SCHOOL-A": {"school"}}),
        [gp, school]))
    assert right["GP-A"].shared and right["GP-A"].rule_id == "DAI-GP"
    assert right["GP-A"].fields == ("occurred_at", "summary")
    assert right["SCHOOL-A"].shared and right["SCHOOL-A"].acknowledge_within_hours == 12
    # Without ack hours on the rule or category, the policy default applies.
    assert right["GP-A"].acknowledge_within_hours == shipped.defaults.acknowledge_within_hours


def test_relationship_scope_without_named_kinds_accepts_any_relationship(shipped):
    """CPP-HV names no relationship kind: any stated relationship will do, in any area."""
    hv = Candidate("HV-B", "health_visiting", SANDWELL)
    shared = _by_agency(decide_recipients(shipped, "child_protection_plan", "CSC-A",
                                          _child(relationships={"HV-B": {"other"}}), [hv]))
    assert shared["HV-B"].shared and shared["HV-B"].rule_id == "CPP-HV"
    assert shared["HV-B"].fields == ("period", "summary")
    not_shared = _by_agency(decide_recipients(shipped, "child_protection_plan", "CSC-A",
                                              _child(), [hv]))
    assert not not_shared["HV-B"].shared


@pytest.mark.parametrize(("age", "shared"),
                         [(0, True), (4, True), (5, False), (7, False), (None, False)])
def test_health_visitor_gets_domestic_abuse_for_under_fives_only(shipped, age, shared):
    hv = Candidate("HV-A", "health_visiting", BIRMINGHAM)
    child = _child(relationships={"HV-A": {"health_visitor"}}, age=age)
    (decision,) = decide_recipients(shipped, "domestic_abuse_incident", "POLICE-A", child, [hv])
    assert decision.shared is shared
    assert decision.rule_id == "DAI-HV"
    if not shared:
        assert "under 5" in decision.reason


def test_unborn_child_counts_as_age_zero(shipped):
    """An unborn child (age 0 from api.identity.service.age_in_years) reaches the health visitor."""
    from api.identity.models import Person
    from api.identity.service import age_in_years

    unborn = Person(unborn=True, mother_nhs_number="9990000018")
    hv = Candidate("HV-A", "health_visiting", BIRMINGHAM)
    child = _child(relationships={"HV-A": {"health_visitor"}}, age=age_in_years(unborn))
    (decision,) = decide_recipients(shipped, "domestic_abuse_incident", "POLICE-A", child, [hv])
    assert decision.shared


@pytest.mark.parametrize("category", ["parental_mental_health", "not_brought_to_appointment",
                                      "elective_home_education", "school_exclusion"])
def test_only_if_open_case(shipped, category):
    csc = Candidate("CSC-A", "childrens_social_care", BIRMINGHAM)
    publisher = {"elective_home_education": "SCHOOL-A",
                 "school_exclusion": "SCHOOL-A"}.get(category, "GP-A")
    (closed,) = decide_recipients(shipped, category, publisher, _child(open_case=False), [csc])
    assert not closed.shared and "open case" in closed.reason
    (open_,) = decide_recipients(shipped, category, publisher, _child(open_case=True), [csc])
    assert open_.shared and open_.rule_id == closed.rule_id


def test_publisher_is_never_a_recipient(shipped):
    candidates = [Candidate("CSC-A", "childrens_social_care", BIRMINGHAM),
                  Candidate("CSC-B", "childrens_social_care", BIRMINGHAM)]
    decisions = decide_recipients(shipped, "child_protection_plan", "CSC-A",
                                  _child(relationships={"CSC-A": {"allocated_social_worker"}}),
                                  candidates)
    assert [d.agency_id for d in decisions] == ["CSC-B"]


def test_kinds_without_a_rule_are_told_why(shipped):
    candidates = [Candidate("HOUSING-A", "housing", BIRMINGHAM),
                  Candidate("GP-A", "gp", BIRMINGHAM)]
    by = _by_agency(decide_recipients(shipped, "missing_episode", "POLICE-A",
                                      _child(relationships={"HOUSING-A": {"other"},
                                                            "GP-A": {"registered_gp"}}),
                                      candidates))
    for agency, kind in (("HOUSING-A", "housing"), ("GP-A", "gp")):
        assert not by[agency].shared and by[agency].rule_id is None
        assert by[agency].reason == (f"the policy does not share missing_episode with {kind} "
                                     "agencies")


def test_share_rule_kinds(shipped):
    assert share_rule_kinds(shipped, "domestic_abuse_incident", "area") == {
        "childrens_social_care", "mash"}
    assert share_rule_kinds(shipped, "domestic_abuse_incident", "relationship") == {
        "education", "gp", "health_visiting", "midwifery"}
    assert share_rule_kinds(shipped, "child_protection_plan", "area") == {
        "childrens_social_care", "mash", "police", "ambulance"}


@pytest.fixture
def layered_policy(policy_dir_copy):
    """A category where one kind is reached by two rules with different fields and deadlines."""
    category = {
        "description": "Two ways for a GP to receive.",
        "publish": {"id": "TL-PUB", "why": "Police publish.", "agency_kinds": ["police"],
                    "purposes": ["safeguarding"], "lawful_basis": {"article6": ["6(1)(e)"]}},
        "acknowledge_within_hours": 48,
        "share": [
            {"id": "TL-AREA", "why": "Any GP in the area gets the summary.",
             "recipient_kinds": ["gp"], "scope": "area", "fields": ["summary"]},
            {"id": "TL-REL", "why": "The child's own GP gets details, fast.",
             "recipient_kinds": ["gp"], "scope": "relationship",
             "relationship_kinds": ["registered_gp"], "fields": ["summary", "details"],
             "acknowledge_within_hours": 6},
            {"id": "TL-HV", "why": "Health visitor for babies in open cases.",
             "recipient_kinds": ["health_visiting"], "scope": "relationship",
             "child_under_years": 1, "only_if_open_case": True},
        ],
    }
    (policy_dir_copy / "local.yaml").write_text(
        yaml.safe_dump({"categories": {"test_layered": category}}))
    return load_policy(policy_dir_copy)


def test_fields_are_the_union_of_passing_rules(layered_policy):
    gp = Candidate("GP-A", "gp", BIRMINGHAM)
    (area_only,) = decide_recipients(layered_policy, "test_layered", "POLICE-A", _child(), [gp])
    assert area_only.shared and area_only.rule_id == "TL-AREA"
    assert area_only.fields == ("summary",)
    assert area_only.acknowledge_within_hours == 48  # the category's deadline
    (both,) = decide_recipients(layered_policy, "test_layered", "POLICE-A",
                                _child(relationships={"GP-A": {"registered_gp"}}), [gp])
    assert both.shared and both.fields == ("details", "summary")
    assert both.acknowledge_within_hours == 6  # the tightest passing rule
    # Out of area but the child's own GP: the relationship rule alone passes.
    gp_b = Candidate("GP-B", "gp", SANDWELL)
    (rel_only,) = decide_recipients(layered_policy, "test_layered", "POLICE-A",
                                    _child(relationships={"GP-B": {"registered_gp"}}), [gp_b])
    assert rel_only.shared and rel_only.rule_id == "TL-REL"
    assert rel_only.fields == ("details", "summary")
    # Neither: refused, citing the first rule that failed.
    (neither,) = decide_recipients(layered_policy, "test_layered", "POLICE-A", _child(), [gp_b])
    assert not neither.shared and neither.rule_id == "TL-AREA"


def test_every_condition_of_a_rule_must_hold(layered_policy):
    hv = Candidate("HV-A", "health_visiting", BIRMINGHAM)
    rel = {"HV-A": {"health_visitor"}}

    def shared(**child):
        (d,) = decide_recipients(layered_policy, "test_layered", "POLICE-A",
                                 _child(relationships=rel, **child), [hv])
        return d.shared

    assert shared(age=0, open_case=True)
    assert not shared(age=0, open_case=False)
    assert not shared(age=1, open_case=True)
    (no_rel,) = decide_recipients(layered_policy, "test_layered", "POLICE-A",
                                  _child(age=0, open_case=True), [hv])
    assert not no_rel.shared


# --- plain-language warnings -------------------------------------------------------------

def _codes(summary: str, rules: PlainLanguage) -> list[tuple[str, str]]:
    return [(w["code"], w["term"]) for w in summary_warnings(summary, rules)]


def test_plain_summary_gets_no_warnings(shipped):
    summary = ("Police attended a domestic abuse incident at home last night; Amelia was "
               "present and frightened. Her mother's partner was arrested.")
    assert summary_warnings(summary, shipped.plain_language) == []


def test_jargon_is_warned_with_what_to_say_instead(shipped):
    rules = shipped.plain_language
    warnings = summary_warnings("Strategy discussion held, s47 started and ICPC booked for the "
                                "child next week.", rules)
    assert [(w["code"], w["term"]) for w in warnings] == [("jargon", "s47"), ("jargon", "ICPC")]
    assert "initial child protection conference" in warnings[1]["message"]
    assert _codes("Child has been on a CIN plan since March, reviewed monthly by us.", rules) \
        == [("jargon", "CIN")]
    assert _codes("Mother's DASH assessment came out high risk after the assault.", rules) \
        == [("jargon", "DASH")]
    # Case does not hide jargon; punctuation around it does not either.
    assert ("jargon", "DASH") in _codes("dash completed by the attending officer tonight.", rules)
    assert ("jargon", "s.47") in _codes("An s.47 enquiry was opened about the bruising today.",
                                        rules)


def test_jargon_matches_whole_words_only(shipped):
    rules = shipped.plain_language
    for summary in (
        "The school dashboard shows Amelia missed eleven days of school this term.",
        "Dashed out of the house at midnight and was found by police at 2am.",
        "A lack of food in the home; the cupboards were empty when the health visitor called.",
        "He went to the cinema alone and did not come home until the next morning.",
        "A CPP is in place because of neglect; home conditions remain very poor.",
    ):
        terms = [t for c, t in _codes(summary, rules) if c == "jargon"]
        assert "DASH" not in terms and "LAC" not in terms and "CIN" not in terms
        assert "CP" not in terms, summary


def test_generic_reassurance_is_warned(shipped):
    rules = shipped.plain_language
    assert _codes("Mum says the children are doing well and there are no concerns at home.",
                  rules) == [("generic_reassurance", "doing well"),
                             ("generic_reassurance", "no concerns")]
    # "unsettled" says something; only the bare reassurance is warned.
    assert _codes("The baby was unsettled and crying throughout the two hour visit.", rules) \
        == []


def test_too_short_summary_is_warned(shipped):
    rules = shipped.plain_language
    assert _codes("Seen today.", rules) == [("too_short", "")]
    assert _codes("Amelia was seen with a bruise today.", rules) == []


def test_a_partnership_can_extend_the_term_lists():
    rules = PlainLanguage(jargon=[PlainLanguageTerm(term="TAF", say_instead="say 'team around "
                                                    "the family meeting'")],
                          generic_reassurance=["coping"], min_summary_words=3)
    warnings = summary_warnings("TAF held, mum coping.", rules)
    assert [(w["code"], w["term"]) for w in warnings] == [("jargon", "TAF"),
                                                          ("generic_reassurance", "coping")]
    assert "team around the family" in warnings[0]["message"]
    assert summary_warnings("TAF held, mum coping.", PlainLanguage(min_summary_words=3)) == []
