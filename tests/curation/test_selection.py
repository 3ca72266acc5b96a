from curation.selection import Sample, select_seed, select_start


def sample(id, problem, *, hinted=True, correct=True, clean_calls=1, flags=(), length=100):
    return Sample(id, problem, hinted, correct, clean_calls, tuple(flags), length)


def test_seed_keeps_problems_solved_only_with_hints():
    samples = [
        # problem 1: baseline fails, hinted succeeds with a clean call -> candidate
        sample(1, 1, hinted=False, correct=False, clean_calls=0),
        sample(2, 1),
        # problem 2: baseline already succeeds -> not needed
        sample(3, 2, hinted=False, correct=True, clean_calls=0),
        sample(4, 2),
        # problem 3: hinted fails too
        sample(5, 3, hinted=False, correct=False),
        sample(6, 3, correct=False),
        # problem 4: hinted correct but its only code call errored
        sample(7, 4, hinted=False, correct=False),
        sample(8, 4, clean_calls=0, flags=["code_error"]),
        # problem 5: correct but repetitive
        sample(9, 5, hinted=False, correct=False),
        sample(10, 5, flags=["repetition"]),
        # problem 6: no baseline sample at all -> no evidence the hints were needed
        sample(11, 6),
    ]
    result = select_seed(samples)
    assert result.chosen == [2]
    assert [step["count"] for step in result.funnel] == [6, 4, 3, 2, 1, 1]


def test_seed_prefers_fewest_flags_then_shortest():
    samples = [
        sample(1, 1, hinted=False, correct=False),
        sample(2, 1, flags=["placeholder"], length=10),
        sample(3, 1, length=500),
        sample(4, 1, length=200),
    ]
    assert select_seed(samples).chosen == [4]


def test_seed_repetition_filter_can_be_turned_off():
    samples = [sample(1, 1, hinted=False, correct=False), sample(2, 1, flags=["repetition"])]
    assert select_seed(samples).chosen == []
    assert select_seed(samples, drop_repetitive=False).chosen == [2]


def test_start_keeps_one_correct_non_repetitive_sample_per_problem():
    samples = [
        sample(1, 1, correct=False),
        sample(2, 1, length=300),
        sample(3, 1, length=200),
        sample(4, 2, flags=["repetition"]),
        sample(5, 3, correct=None),  # unscored counts as not correct
    ]
    result = select_start(samples)
    assert result.chosen == [3]
    assert [(s["step"], s["count"]) for s in result.funnel] == [
        ("samples", 5),
        ("correct", 3),
        ("no repetitive pattern", 2),
        ("candidates (one per problem)", 1),
    ]
