import json
from pathlib import Path

import pytest

from tests.training import synthetic
from training.tiny import build_model, build_tokenizer


@pytest.fixture(scope="session")
def rows() -> list[dict]:
    return synthetic.rows(20, seed=0, filler_words=(0, 12))


@pytest.fixture(scope="session")
def tokenizer(rows):
    return build_tokenizer(synthetic.corpus(synthetic.rows(60, seed=1, filler_words=(0, 20))))


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A saved tiny base model (random weights) with its tokenizer."""
    path = tmp_path_factory.mktemp("tiny-base")
    tokenizer.save_pretrained(path)
    build_model(tokenizer, seed=0).save_pretrained(path)
    return path


def write_jsonl(path: Path, data: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


@pytest.fixture
def dataset_file(tmp_path, rows) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", rows)
