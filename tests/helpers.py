import search
import retrain

TINY = ["--epochs", "2", "--batches-per-epoch", "2", "--device", "cpu", "--quiet"]


def run_search(tmp_path, *extra):
    return search.main(search.get_parser().parse_args(["--out", str(tmp_path / "results"), *TINY, *extra]))


def run_retrain(tmp_path, *extra):
    return retrain.main(retrain.get_parser().parse_args(["--out", str(tmp_path / "results"), *TINY, *extra]))
