"""Look inside a word LM version: an embedding map, neuron-firing pictures, and a search for selective neurons.

    python -m training.visualize embeddings --model models/wordlm/1 --words 150 --out docs/embeddings.png
    python -m training.visualize neuron --model models/wordlm/1 --layer 1 --neuron 247 --state cell \\
        --text "alice said, 'oh dear!'" --out docs/neuron.png
    python -m training.visualize search --model models/wordlm/1 --class articles --out docs/articles.png
    python -m training.visualize search --model models/wordlm/1 --words said cried replied

Everything works from a model version directory (the ONNX activations graph run with onnxruntime, vocab.json and
embeddings.npy), so it runs on a committed model without its training checkpoint. Layers count from 0, as in
`POST /inspect`.

The search walks a held-out sample of the corpus through the LSTM and scores every (layer, state, neuron) by how
well its activation *after reading a token* separates the tokens of the class from all other tokens:

    selectivity = 2 * AUC - 1      in [-1, 1]; AUC = P(activation on a class token > on another token)

+1: higher on every class token than on any other token; -1: lower on every one; 0: no preference. It is
rank-based, so bounded hidden states and unbounded cell states compare fairly. Neurons are ranked by |selectivity|
(to 3 decimals), then by the separation d' = (mean on class - mean elsewhere) / pooled standard deviation.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle
from tqdm import tqdm

from service.families.wordlm.inspect import ActivationWalker, unit_rows
from service.manifest import MANIFEST_NAME, read_manifest, verify_files
from service.tokenizer import EOS, EosMode, Vocab, tokenize
from training.data.text import load_corpus

log = logging.getLogger("training.visualize")

STATES = ("hidden", "cell")
# Named word classes for the search (and the colours of the embedding map). Tokens are as the tokenizer writes them.
WORD_CLASSES: dict[str, tuple[str, ...]] = {
    "articles": ("a", "an", "the"),
    "quotes": ("'", '"'),
    "sentence-ends": (".", "!", "?"),
    "line-ends": (EOS,),  # models trained with eos "line"
    "paragraph-ends": (EOS,),  # the same token in models trained with eos "paragraph"
    "commas": (",", ";", ":"),
    "pronouns": ("i", "you", "he", "she", "it", "we", "they", "me", "him", "her", "us", "them"),
    "possessives": ("my", "your", "his", "her", "its", "our", "their"),
    "prepositions": ("of", "in", "to", "on", "at", "by", "with", "from", "for", "into", "upon", "about"),
    "conjunctions": ("and", "but", "or", "nor", "so", "yet"),
    "be": ("is", "was", "were", "be", "been", "are", "am", "being"),
    "speech-verbs": ("said", "cried", "replied", "asked", "exclaimed", "added", "thought", "shouted", "answered"),
}
MAP_CLASSES = ("articles", "pronouns", "possessives", "prepositions", "conjunctions", "be", "speech-verbs")


# ---- the model, from its version directory -------------------------------------------------------------------
@dataclass
class InspectableModel:
    name: str
    vocab: Vocab
    walker: ActivationWalker
    embeddings: np.ndarray  # (V, E) input embeddings
    eos: EosMode = "line"  # where the model's tokenizer puts <eos> (its manifest's tokenizer.eos)

    @property
    def layers(self) -> int:
        return self.walker.layers

    @property
    def hidden(self) -> int:
        return self.walker.hidden


def version_dir(path: Path) -> Path:
    """A version directory as given, or the highest version inside a family directory (models/wordlm)."""
    if (path / MANIFEST_NAME).is_file():
        return path
    versions = sorted(
        (p for p in path.glob("*") if p.name.isdigit() and (p / MANIFEST_NAME).is_file()), key=lambda p: int(p.name)
    )
    if not versions:
        raise SystemExit(f"{path}: no {MANIFEST_NAME} here nor in a version directory below")
    return versions[-1]


def load_model_dir(path: Path) -> InspectableModel:
    path = version_dir(path)
    manifest = read_manifest(path)
    problems = verify_files(path, manifest)
    if problems:
        raise SystemExit(f"{path}: {'; '.join(problems)}")
    if "activations" not in manifest.graphs or "embeddings_file" not in manifest.config:
        raise SystemExit(
            f"{path}: no activations graph or embeddings (exported before inspection existed); "
            "re-export it with `python -m training.wordlm export`"
        )
    assert manifest.tokenizer is not None
    # onnxruntime directly (not training.export, which imports torch): this command needs no torch at all.
    session = ort.InferenceSession(str(path / manifest.graphs["activations"].file), providers=["CPUExecutionProvider"])
    walker = ActivationWalker(session, manifest.config["layers"], manifest.config["hidden"])
    embeddings = np.load(path / manifest.config["embeddings_file"], allow_pickle=False)
    vocab = Vocab.load(path / manifest.tokenizer.vocab_file)
    return InspectableModel(f"{manifest.name} v{manifest.version}", vocab, walker, embeddings, manifest.tokenizer.eos)


# ---- embedding map -------------------------------------------------------------------------------------------
def frequent_words(vocab: Vocab, count: int) -> list[int]:
    """Ids of the `count` most frequent words. Vocab.build orders tokens by training frequency after the specials;
    punctuation (tokens without a letter) is left out of the map."""
    specials = {vocab.unk, EOS}
    ids = [i for i, t in enumerate(vocab.itos) if t not in specials and any(ch.isalpha() for ch in t)]
    return ids[:count]


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, E) -> the first two principal coordinates (N, 2) and the share of variance each explains (2,)."""
    centered = vectors - vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(centered, full_matrices=False)
    explained = singular**2 / np.sum(singular**2)
    return centered @ components[:2].T, explained[:2]


def embedding_map(model: InspectableModel, words: int, out: Path) -> Path:
    """PCA of the unit-length embeddings of the most frequent words, each labelled; function-word classes coloured."""
    ids = frequent_words(model.vocab, words)
    # Unit rows: the map shows directions, the geometry the cosine neighbours of /embeddings/neighbors use.
    points, explained = pca_2d(unit_rows(model.embeddings[ids]))
    tokens = [model.vocab.itos[i] for i in ids]
    word_class = {w: name for name in MAP_CLASSES for w in WORD_CLASSES[name]}
    tab10 = plt.get_cmap("tab10")
    colours = {name: tab10(i) for i, name in enumerate(MAP_CLASSES)}
    fig, ax = plt.subplots(figsize=(11, 8.5), dpi=90)
    for name in (None, *MAP_CLASSES):
        members = [j for j, t in enumerate(tokens) if word_class.get(t) == name]
        if not members:
            continue
        colour = "#9a9a9a" if name is None else colours[name]
        ax.scatter(points[members, 0], points[members, 1], s=10, color=colour, label=name or "other words")
        for j in members:
            ax.annotate(
                tokens[j],
                points[j],
                fontsize=7,
                color="#333333" if name is None else colour,
                xytext=(2, 2),
                textcoords="offset points",
            )
    ax.set_xlabel(f"principal component 1 ({explained[0]:.1%} of the variance)")
    ax.set_ylabel(f"principal component 2 ({explained[1]:.1%})")
    ax.set_title(f"{model.name}: input embeddings of the {len(ids)} most frequent words (PCA)")
    ax.legend(loc="best", fontsize=8, markerscale=1.5)
    ax.grid(alpha=0.2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


# ---- neuron-firing picture -----------------------------------------------------------------------------------
def firing_picture(
    tokens: Sequence[str],
    values: np.ndarray,
    out: Path,
    title: str,
    highlight: Iterable[int] = (),
    width: int = 100,
) -> Path:
    """The text, each token on a background coloured by one neuron's activation after reading it (red positive,
    blue negative, white 0). Tokens at `highlight` positions are bold and underlined. values: (T,). The title may
    have several lines."""
    assert len(tokens) == len(values), "one value per token"
    marked = set(highlight)
    # Lay the tokens out in character cells of a monospace font: token + one space, at most `width` cells a line;
    # <eos> is drawn as ↵ and ends the line, as in the text.
    cells: list[tuple[int, int, str]] = []  # (row, column, text)
    row = col = 0
    for token in tokens:
        text = "↵" if token == EOS else token
        if col and col + len(text) > width:
            row, col = row + 1, 0
        cells.append((row, col, text))
        col += len(text) + 1
        if token == EOS:
            row, col = row + 1, 0
    rows = max((r for r, _, _ in cells), default=0) + 1
    columns = max((c + len(t) for _, c, t in cells), default=1)
    limit = float(np.max(np.abs(values))) if len(values) else 0.0
    norm, cmap = Normalize(-(limit or 1.0), limit or 1.0), plt.get_cmap("RdBu_r")
    font = 11.0  # points; a DejaVu Sans Mono character is 0.602 em wide
    cell_w, cell_h = font * 0.602 / 72, font * 1.8 / 72  # inches
    margin, top, bottom = 0.25, 0.2 + 0.2 * (title.count("\n") + 1), 0.65  # inches: sides, title, colour bar
    fig_w, fig_h = max(columns * cell_w, 4.5) + 2 * margin, rows * cell_h + top + bottom
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=100)
    ax = fig.add_axes((margin / fig_w, bottom / fig_h, columns * cell_w / fig_w, rows * cell_h / fig_h))
    ax.set_xlim(0, columns)
    ax.set_ylim(rows, 0)
    ax.axis("off")
    for position, ((r, c, text), value) in enumerate(zip(cells, values, strict=True)):
        ax.add_patch(Rectangle((c - 0.15, r + 0.08), len(text) + 0.3, 0.84, color=cmap(norm(value)), lw=0))
        dark = abs(float(norm(value)) - 0.5) > 0.33  # white letters on the deep colours
        ax.text(
            c,
            r + 0.5,
            text,
            family="DejaVu Sans Mono",
            fontsize=font,
            va="center",
            ha="left",
            color="white" if dark else "black",
            weight="bold" if position in marked else "normal",
        )
        if position in marked:
            ax.plot([c, c + len(text)], [r + 0.97, r + 0.97], color="black", lw=1.5)
    fig.text(0.5, 1 - 0.12 / fig_h, title, fontsize=10, ha="center", va="top", linespacing=1.5)
    bar_w = min(4.0, fig_w - 2 * margin)
    bar_ax = fig.add_axes(((fig_w - bar_w) / 2 / fig_w, 0.3 / fig_h, bar_w / fig_w, 0.14 / fig_h))
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=bar_ax, orientation="horizontal")
    bar_ax.tick_params(labelsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def neuron_values(model: InspectableModel, ids: list[int], layer: int, neuron: int, state: str) -> np.ndarray:
    """One neuron's activation after each token of a text read from the zero state: (T,)."""
    acts = model.walker.walk(np.asarray([ids], dtype=np.int64), keep_gates=False)
    return (acts.hidden if state == "hidden" else acts.cell)[0, :, layer, neuron]


# ---- neuron search -------------------------------------------------------------------------------------------
@dataclass
class NeuronScore:
    layer: int
    state: str  # "hidden" or "cell"
    neuron: int
    selectivity: float  # 2 AUC - 1
    separation: float  # d'
    mean_on_class: float
    mean_elsewhere: float

    def label(self, class_name: str) -> str:
        sign = "" if self.selectivity > 0 else " (fires negative)"
        return f"layer {self.layer}, {self.state} neuron {self.neuron}: {class_name} detector{sign}"


@dataclass
class SampleActivations:
    """A token sample walked in B columns: column b holds tokens [b * T, (b + 1) * T) of the sample."""

    ids: np.ndarray  # (B, T)
    tokens: list[list[str]]  # (B, T) the tokens as written in the text
    hidden: np.ndarray  # (B, T, L, H)
    cell: np.ndarray  # (B, T, L, H)
    warmup: int  # the first `warmup` tokens of each column are not scored (the state starts at zero there)


def walk_sample(model: InspectableModel, tokens: list[str], columns: int = 32, warmup: int = 10) -> SampleActivations:
    """Walk a long token sample as `columns` contiguous pieces side by side (one ONNX call per step for all)."""
    steps = len(tokens) // columns
    if steps <= warmup:
        raise ValueError(f"the sample has {len(tokens)} tokens: too few for {columns} columns of > {warmup} steps")
    used = tokens[: steps * columns]
    ids = np.asarray(model.vocab.encode(used), dtype=np.int64).reshape(columns, steps)
    log.info("walking %d tokens (%d columns x %d steps)", steps * columns, columns, steps)
    shape = (columns, steps, model.layers, model.hidden)
    hidden, cell = np.empty(shape, np.float32), np.empty(shape, np.float32)
    chunk = 64  # steps per walk call; the state is carried between calls by walking from the previous end
    state = None
    for start in tqdm(range(0, steps, chunk), desc="walking", unit="chunk", leave=False, file=sys.stderr):
        acts = model.walker.walk(ids[:, start : start + chunk], keep_gates=False, state=state)
        hidden[:, start : start + chunk], cell[:, start : start + chunk] = acts.hidden, acts.cell
        state = acts.final_state
    token_rows = [used[b * steps : (b + 1) * steps] for b in range(columns)]
    return SampleActivations(ids, token_rows, hidden, cell, warmup)


def auc_columns(values: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per column of values (N, M): P(a positive row's value > a negative row's), ties counting half. (M,)

    Mann-Whitney: AUC = (sum of the positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg), with tied values
    given their average rank."""
    n = values.shape[0]
    n_pos = int(positive.sum())
    n_neg = n - n_pos
    order = np.argsort(values, axis=0, kind="stable")  # (N, M)
    ordered = np.take_along_axis(values, order, axis=0)
    index = np.arange(n)[:, None]
    new_group = np.ones_like(ordered, dtype=bool)
    new_group[1:] = ordered[1:] != ordered[:-1]
    first = np.maximum.accumulate(np.where(new_group, index, 0), axis=0)  # first row of each tie group
    ends_group = np.ones_like(ordered, dtype=bool)
    ends_group[:-1] = new_group[1:]
    last = np.minimum.accumulate(np.where(ends_group, index, n - 1)[::-1], axis=0)[::-1]  # last row of the group
    ranks = (first + last) / 2.0 + 1.0  # average 1-based rank
    rank_sum = np.sum(ranks * positive[order], axis=0)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def search_neurons(
    sample: SampleActivations, class_ids: set[int], top: int = 10, layers: Sequence[int] | None = None
) -> list[NeuronScore]:
    """Rank every (layer, state, neuron) by how selectively it fires on the class (see the module docstring);
    `layers` limits the search to some layers."""
    w = sample.warmup
    flat_ids = sample.ids[:, w:].reshape(-1)  # (N,)
    positive = np.isin(flat_ids, sorted(class_ids))
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == len(positive):
        raise ValueError("the class must occur in the sample, and not be all of it")
    scores: list[NeuronScore] = []
    for state in STATES:
        acts = getattr(sample, state)[:, w:]  # (B, T - w, L, H)
        for layer in range(acts.shape[2]) if layers is None else layers:
            values = acts[:, :, layer].reshape(-1, acts.shape[3]).astype(np.float64)  # (N, H)
            # In slices of columns: the ranking needs several (N, columns) arrays at once.
            auc = np.concatenate([auc_columns(values[:, j : j + 64], positive) for j in range(0, values.shape[1], 64)])
            selectivity = 2.0 * auc - 1.0
            on, off = values[positive], values[~positive]
            # Pooled within-group standard deviation: sqrt of (both groups' sums of squared deviations) / (N - 2).
            pooled = np.sqrt((on.var(axis=0) * len(on) + off.var(axis=0) * len(off)) / max(len(values) - 2, 1))
            separation = (on.mean(axis=0) - off.mean(axis=0)) / np.maximum(pooled, 1e-12)
            for neuron in range(values.shape[1]):
                scores.append(
                    NeuronScore(
                        layer,
                        state,
                        neuron,
                        float(selectivity[neuron]),
                        float(separation[neuron]),
                        float(on[:, neuron].mean()),
                        float(off[:, neuron].mean()),
                    )
                )
    scores.sort(key=lambda s: (-round(abs(s.selectivity), 3), -abs(s.separation), s.layer, s.state, s.neuron))
    return scores[:top]


def best_window(sample: SampleActivations, class_ids: set[int], length: int) -> tuple[int, int]:
    """(column, start) of the `length`-token stretch, past the warm-up, holding the most class tokens."""
    best, where = -1, (0, sample.warmup)
    is_class = np.isin(sample.ids, sorted(class_ids))
    for column in range(sample.ids.shape[0]):
        for start in range(sample.warmup, max(sample.warmup, sample.ids.shape[1] - length) + 1, max(length // 4, 1)):
            count = int(is_class[column, start : start + length].sum())
            if count > best:
                best, where = count, (column, start)
    return where


def resolve_class(vocab: Vocab, class_name: str | None, words: Sequence[str]) -> tuple[str, set[int]]:
    """A class name for titles and the vocabulary ids of its tokens (words outside the vocabulary are dropped)."""
    members = WORD_CLASSES[class_name] if class_name else tuple(t for w in words for t in tokenize(w, add_eos=False))
    ids = {vocab.stoi[t] for t in members if t in vocab.stoi and t != vocab.unk}
    missing = [t for t in members if t not in vocab.stoi]
    if missing:
        log.warning("not in the vocabulary (ignored): %s", " ".join(missing))
    if not ids:
        raise SystemExit("none of the words is in the model's vocabulary")
    words_in = [t for t in dict.fromkeys(members) if t in vocab.stoi]
    # "a/an/the" reads better than "articles"; long or punctuation classes keep their name.
    spelled = len(words_in) <= 4 and all(t.isalpha() for t in words_in)
    return "/".join(words_in) if spelled or not class_name else class_name, ids


# ---- command line --------------------------------------------------------------------------------------------
def _text_arg(args: argparse.Namespace) -> str:
    if args.text_file:
        return Path(args.text_file).read_text(encoding="utf-8")
    return str(args.text)


def run_search(args: argparse.Namespace, model: InspectableModel) -> None:
    class_name, class_ids = resolve_class(model.vocab, args.word_class, args.words or ())
    corpus = load_corpus(args.corpus, args.data_dir, eos=model.eos)  # read as the model was trained
    tokens = getattr(corpus, args.split)[: args.max_tokens]
    sample = walk_sample(model, tokens)
    n_class = int(np.isin(sample.ids[:, sample.warmup :], sorted(class_ids)).sum())
    print(
        f"{model.name}: {sample.ids[:, sample.warmup :].size:,} tokens of the {args.split} split; "
        f"{class_name}: {n_class:,} occurrences of {' '.join(model.vocab.itos[i] for i in sorted(class_ids))}"
    )
    if args.layer is not None and not 0 <= args.layer < model.layers:
        raise SystemExit(f"--layer must be 0..{model.layers - 1}")
    ranked = search_neurons(sample, class_ids, args.top, None if args.layer is None else [args.layer])
    print(
        f"{'rank':>4}  {'layer':>5}  {'state':<6}  {'neuron':>6}  {'selectivity':>11}  {'d prime':>7}  "
        f"{'mean on class':>13}  {'mean elsewhere':>14}"
    )
    for rank, s in enumerate(ranked, 1):
        print(
            f"{rank:>4}  {s.layer:>5}  {s.state:<6}  {s.neuron:>6}  {s.selectivity:>+11.3f}  {s.separation:>+7.2f}  "
            f"{s.mean_on_class:>13.3f}  {s.mean_elsewhere:>14.3f}"
        )
    best = ranked[0]
    print(f"best: {best.label(class_name)}; selectivity {best.selectivity:+.3f}, d' {best.separation:+.2f}")
    if args.out:
        column, start = best_window(sample, class_ids, args.picture_tokens)
        end = start + args.picture_tokens
        values = getattr(sample, best.state)[column, start:end, best.layer, best.neuron]
        ids = sample.ids[column, start:end]
        title = (
            f"{model.name} — {best.label(class_name)}\n"
            f"selectivity {best.selectivity:+.2f}, d' {best.separation:+.2f}; the class's tokens are underlined"
        )
        firing_picture(
            sample.tokens[column][start:end],
            values,
            args.out,
            title,
            highlight=np.flatnonzero(np.isin(ids, sorted(class_ids))).tolist(),
        )
        print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.visualize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_map = sub.add_parser("embeddings", help="PNG map (PCA) of the most frequent words' embeddings")
    p_neuron = sub.add_parser("neuron", help="PNG of a text coloured by one neuron's activation")
    p_search = sub.add_parser("search", help="rank neurons by how selectively they fire on a word class")
    for p in (p_map, p_neuron, p_search):
        p.add_argument("--model", type=Path, default=Path("models/wordlm"), help="version dir (or family dir: highest)")
    p_map.add_argument("--words", type=int, default=150, help="how many of the most frequent words")
    p_map.add_argument("--out", type=Path, default=Path("docs/embeddings.png"))
    p_neuron.add_argument("--layer", type=int, required=True, help="0-based")
    p_neuron.add_argument("--neuron", type=int, required=True)
    p_neuron.add_argument("--state", choices=STATES, default="cell")
    text = p_neuron.add_mutually_exclusive_group(required=True)
    text.add_argument("--text")
    text.add_argument("--text-file", type=Path)
    p_neuron.add_argument("--out", type=Path, default=Path("docs/neuron.png"))
    chosen = p_search.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--class", dest="word_class", choices=sorted(WORD_CLASSES), help="a named word class")
    chosen.add_argument("--words", nargs="+", help="the class as a list of words, e.g. --words a an the")
    p_search.add_argument("--corpus", type=Path, help="sample this UTF-8 text instead of the default books")
    p_search.add_argument("--data-dir", type=Path, default=Path("data"), help="cache of the default books")
    p_search.add_argument("--split", choices=("train", "valid", "test"), default="valid")
    p_search.add_argument("--max-tokens", type=int, default=10_000, help="sample size")
    p_search.add_argument("--top", type=int, default=10, help="neurons to list")
    p_search.add_argument("--layer", type=int, help="search this layer only (0-based; default: all)")
    p_search.add_argument("--picture-tokens", type=int, default=120, help="length of the best neuron's picture")
    p_search.add_argument("--out", type=Path, help="write the best neuron's firing picture here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    model = load_model_dir(args.model)
    if args.command == "embeddings":
        print(f"wrote {embedding_map(model, args.words, args.out)}")
    elif args.command == "neuron":
        if not (0 <= args.layer < model.layers and 0 <= args.neuron < model.hidden):
            raise SystemExit(f"layer must be 0..{model.layers - 1} and neuron 0..{model.hidden - 1}")
        tokens = tokenize(_text_arg(args), eos=model.eos)
        values = neuron_values(model, model.vocab.encode(tokens), args.layer, args.neuron, args.state)
        title = f"{model.name} — layer {args.layer}, {args.state} neuron {args.neuron}"
        print(f"wrote {firing_picture(tokens, values, args.out, title)}")
    else:
        run_search(args, model)


if __name__ == "__main__":
    main()
