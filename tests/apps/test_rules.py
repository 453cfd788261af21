from roomcast.apps.rules import DataRules, TopicLimits, authorize_data


def test_privileged_topics_need_room_admin() -> None:
    assert authorize_data("control", room_admin=False) is not None
    assert authorize_data("control", room_admin=True) is None
    assert authorize_data("qa", room_admin=False) is not None
    assert authorize_data("chat", room_admin=False) is None


def test_questions_and_gifts_are_rate_limited_per_viewer() -> None:
    limits = TopicLimits()
    questions = [limits.allow("v1", "question", 0.0) for _ in range(10)]
    assert questions.count(True) == 3  # a burst of 3, then one every 2 s
    assert limits.allow("v2", "question", 0.0)  # another viewer has its own budget
    assert not limits.allow("v1", "question", 1.0) and limits.allow("v1", "question", 2.1)
    gifts = [limits.allow("v1", "gift", 5.0) for _ in range(20)]
    assert gifts.count(True) == 10
    assert all(limits.allow("v1", "chat", 5.0) for _ in range(100))  # unlisted topics: the router's general limit


def test_rules_combine_grants_and_rates() -> None:
    rules = DataRules()
    assert rules("viewer", "control", False, 0.0) == ("permission_denied", "topic 'control' needs the roomAdmin grant")
    assert rules("ops", "control", True, 0.0) is None
    for _ in range(3):
        assert rules("v", "question", False, 0.0) is None
    assert rules("v", "question", False, 0.0) is not None and rules("v", "question", False, 0.0)[0] == "rate_limited"  # type: ignore[index]
