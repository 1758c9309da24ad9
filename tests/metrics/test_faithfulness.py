import math

import pytest

from facellm.attributes import BINARY_ATTRIBUTES
from facellm.metrics.faithfulness import (
    Claim,
    ClaimCheck,
    binary_truth,
    claims_per_explanation,
    hallucinated_claim_rate,
    hallucinating_explanation_rate,
    parse_claims,
    score_claims,
    supported_claim_rate,
    unverifiable_claim_rate,
)

C = Claim

SINGLE_FACE = [
    ("The person wears eyeglasses and has brown hair.",
     [C("eyeglasses", "person", True), C("brown_hair", "person", True)]),
    ("The person wears no eyeglasses.", [C("eyeglasses", "person", False)]),
    ("Neither glasses nor a hat are visible.",
     [C("eyeglasses", "person", False), C("wearing_hat", "person", False)]),
    # the negated list runs through commas and the Oxford "and"; ", and wears" starts a new clause
    ("The person has no beard, mustache, or goatee, and wears a hat.",
     [C("beard", "person", False), C("mustache", "person", False), C("goatee", "person", False),
      C("wearing_hat", "person", True)]),
    ("The person wears no glasses, has brown hair.",
     [C("eyeglasses", "person", False), C("brown_hair", "person", True)]),
    ("The person does not appear to wear glasses.", [C("eyeglasses", "person", False)]),
    ("The man has no visible glasses, but has a moustache and rosy cheeks.",
     [C("eyeglasses", "person", False), C("mustache", "person", True), C("rosy_cheeks", "person", True)]),
    ("The person is clean-shaven and not bald.", [C("beard", "person", False), C("bald", "person", False)]),
    ("The person is not clean-shaven.", [C("beard", "person", True)]),
    ("She has long wavy brown hair and is not smiling, without earrings.",
     [C("wavy_hair", "person", True), C("brown_hair", "person", True), C("smiling", "person", False),
      C("wearing_earrings", "person", False)]),
    ("A young woman with blonde hair, wearing heavy makeup.",
     [C("young", "person", True), C("blond_hair", "person", True), C("heavy_makeup", "person", True)]),
    ("eyeglasses: yes\nbeard: no\nwearing hat: no\nmouth slightly open: yes",
     [C("eyeglasses", "person", True), C("beard", "person", False), C("wearing_hat", "person", False),
      C("mouth_slightly_open", "person", True)]),
    ("It is unclear whether the person wears glasses; the hair might be black.", []),
    ("The person wears sunglasses and a cap.", [C("wearing_hat", "person", True)]),  # sunglasses: not a phrase
]

PAIR = [
    ("Both wear glasses.", [C("eyeglasses", "both", True)]),
    ("The second has a beard.", [C("beard", "second", True)]),
    ("Only the first face wears a hat.", [C("wearing_hat", "first", True), C("wearing_hat", "second", False)]),
    ("neither has bangs", [C("bangs", "neither", True)]),
    ("the first is bald while the second has black hair",
     [C("bald", "first", True), C("black_hair", "second", True)]),
    ("The first face has a beard, while the second does not.",
     [C("beard", "first", True), C("beard", "second", False)]),
    ("The first face has no beard while the second does.",
     [C("beard", "first", False), C("beard", "second", True)]),
    ("The first has no beard and neither does the second.",
     [C("beard", "first", False), C("beard", "second", False)]),
    ("Unlike the first face, the second has a beard.", [C("beard", "second", True), C("beard", "first", False)]),
    ("The first face, like the second, wears glasses.",
     [C("eyeglasses", "first", True), C("eyeglasses", "second", True)]),
    ("The first face is smiling and so is the second.", [C("smiling", "first", True), C("smiling", "second", True)]),
    ("The first has a beard, the other does not.", [C("beard", "first", True), C("beard", "second", False)]),
    ("Both individuals share brown hair, but only the second has a mustache.",
     [C("brown_hair", "both", True), C("mustache", "second", True), C("mustache", "first", False)]),
    ("They both have straight hair; one of them wears glasses.", [C("straight_hair", "both", True)]),
    ("No beard on either face, and glasses appear in both images.",
     [C("beard", "both", False), C("eyeglasses", "both", True)]),
    ("In neither image is there a beard. Neither wears glasses nor has a hat.",
     [C("beard", "neither", True), C("eyeglasses", "neither", True), C("wearing_hat", "neither", True)]),
    ("The first face wears both glasses and a hat.",  # "both" coordinates attributes here
     [C("eyeglasses", "first", True), C("wearing_hat", "first", True)]),
    ("Image A shows a man with glasses; Image B has no glasses.",
     [C("eyeglasses", "first", True), C("eyeglasses", "second", False)]),
    ("The first and the second face have blond hair.", [C("blond_hair", "both", True)]),
    ("The skin tone differs: dark in the first face, pale in the second.", [C("pale_skin", "second", True)]),
    ("None of them wears a necktie. The first face may have a goatee.", [C("wearing_necktie", "neither", True)]),
    ("**Similarities:** brown hair, glasses\n**Differences:** a beard",  # subject-less: both in Similarities only
     [C("brown_hair", "both", True), C("eyeglasses", "both", True)]),
    ("Match Verdict: Non-Match\nSimilarities: Not annotated.\nDifferences: None observed.\n"
     "Overall Reasoning: The faces differ in identity traits (a beard, black hair).", []),
]


@pytest.mark.parametrize("text,expected", SINGLE_FACE, ids=[t[:40] for t, _ in SINGLE_FACE])
def test_single_face_claims(text, expected):
    assert parse_claims(text, faces=1) == expected


@pytest.mark.parametrize("text,expected", PAIR, ids=[t[:40] for t, _ in PAIR])
def test_pair_claims(text, expected):
    assert parse_claims(text, faces=2) == expected


def test_at_least_fifteen_hand_written_cases():
    assert len(SINGLE_FACE) + len(PAIR) >= 15


@pytest.mark.parametrize("key", sorted(BINARY_ATTRIBUTES))
def test_target_templates_parse_back_to_their_claim(key):
    """Every has/lacks template of the vocabulary is read as the claim it was written for."""
    attr = BINARY_ATTRIBUTES[key]
    for faces, who, subject in ((1, "the person", "person"), (2, "the first face", "first"),
                                (2, "the second face", "second")):
        assert parse_claims(attr.has.format(who=who) + ".", faces) == [Claim(key, subject, True)]
        assert parse_claims(attr.lacks.format(who=who) + ".", faces) == [Claim(key, subject, False)]
    both = attr.has.format(who="Both faces")
    assert parse_claims(both, 2) == [Claim(key, "both", True)]
    assert parse_claims(f"{key.replace('_', ' ')}: yes\n{key.replace('_', ' ')}: no", 1) == [
        Claim(key, "person", True), Claim(key, "person", False)]


def test_verification_targets_are_fully_supported_by_their_ground_truth():
    """What the verification task teaches a model to say parses into claims the truth supports."""
    from facellm.schema import FacePair, FaceRecord
    from facellm.tasks.verification import VerificationTask

    first = {"eyeglasses": True, "beard": False, "brown_hair": True, "smiling": True, "bald": False}
    second = {"eyeglasses": False, "beard": True, "brown_hair": True, "smiling": True, "bald": False}
    pair = FacePair("p/1", "synthface", "test", FaceRecord("a", "synthface", "test", None, attributes=first),
                    FaceRecord("b", "synthface", "test", None, attributes=second), same=False, fr_score=0.3)
    target = VerificationTask().target(pair, "images_only")
    claims = parse_claims(target, faces=2)
    check = score_claims(claims, first, second)
    assert check.hallucinated == () and check.unverifiable == ()
    assert set(claims) == {C("brown_hair", "both", True), C("smiling", "both", True),
                           C("eyeglasses", "first", True), C("eyeglasses", "second", False),
                           C("beard", "first", False), C("beard", "second", True)}


def test_parse_claims_rejects_bad_faces():
    with pytest.raises(ValueError, match="faces"):
        parse_claims("Both wear glasses.", faces=3)


# --- scoring -------------------------------------------------------------------------------

FIRST = {"eyeglasses": True, "beard": False, "bangs": False, "hair_color": "brown"}
SECOND = {"eyeglasses": True, "beard": True, "bangs": False, "hair_color": "black"}


def test_score_claims_supported_hallucinated_unverifiable():
    claims = [C("eyeglasses", "both", True),      # supported
              C("beard", "second", True),         # supported
              C("bangs", "neither", True),        # supported: neither has bangs
              C("beard", "both", True),           # hallucinated: the first has none
              C("brown_hair", "first", True),     # supported via hair_color
              C("brown_hair", "both", True),      # hallucinated: the second's hair is black
              C("wearing_hat", "first", True),    # unverifiable: not labelled
              C("black_hair", "neither", True)]   # hallucinated: the second has black hair
    check = score_claims(claims, FIRST, SECOND)
    assert check.supported == (claims[0], claims[1], claims[2], claims[4])
    assert check.hallucinated == (claims[3], claims[5], claims[7])
    assert check.unverifiable == (claims[6],)
    assert check.n_claims == 8


def test_score_claims_single_face_and_missing_second_truth():
    check = score_claims([C("eyeglasses", "person", True), C("beard", "person", True),
                          C("beard", "second", True)], FIRST)
    assert check.supported == (C("eyeglasses", "person", True),)
    assert check.hallucinated == (C("beard", "person", True),)
    assert check.unverifiable == (C("beard", "second", True),)


def test_binary_truth_expands_hair_color_without_overriding_labels():
    truth = binary_truth({"hair_color": "brown", "black_hair": True, "eyeglasses": False, "age_group": "young"})
    assert truth == {"black_hair": True, "eyeglasses": False, "blond_hair": False, "brown_hair": True,
                     "gray_hair": False, "red_hair": False}


def test_aggregations():
    checks = [ClaimCheck(supported=(C("a", "both", True),) * 3, hallucinated=(C("b", "first", True),)),
              ClaimCheck(unverifiable=(C("c", "first", True),)),
              ClaimCheck()]
    assert hallucinated_claim_rate(checks) == pytest.approx(1 / 4)
    assert supported_claim_rate(checks) == pytest.approx(3 / 4)
    assert unverifiable_claim_rate(checks) == pytest.approx(1 / 5)
    assert claims_per_explanation(checks) == pytest.approx(5 / 3)
    assert hallucinating_explanation_rate(checks) == pytest.approx(1 / 3)
    assert math.isnan(hallucinated_claim_rate([ClaimCheck()]))
    with pytest.raises(ValueError):
        claims_per_explanation([])
