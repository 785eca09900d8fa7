"""The jitted evaluation loop shared by training's validation, ``evaluate`` and ``recognize``.

One compiled eval step for a fixed batch shape (the loader pads the last batch
and masks the filler rows): logits, the best path (argmax per frame) and, with
labels, the per-example CTC loss, on the device. Lexicons, where the records
carry them, are scored on the device too, by a second small jitted function on
the logits that never leave the device (``decode.lexicon_log_likelihoods``;
one compilation per padded lexicon shape, see ``decode.bucket``). The host
decodes (greedy from the best path; beam search from the fetched logits) and
accumulates the word metrics while the device already runs the next batch.

An Evaluator that turns (``turn=True``) also reads each tall crop turned a quarter each way
(``preprocess.turned_views``: batches carry them in ``meta['turned']``) and keeps, of the
three, the reading whose greedy path is most probable. The turned views wait in a queue and
are read a whole batch at a time (the same compiled step), so the cost is the views read,
and a tall image's reading is final when its views are.

An Evaluator that frames (``frame=True``) also reads each other image whose greedy reading is
unsure (p < ``preprocess.UNSURE``) framed tighter and looser (``preprocess.framed_views``,
made here from the prepared image) through the same queue, and keeps, of the three, the
reading the search ranks first (``LmDecoder.rank`` with a language model; without one, the
most probable greedy path).

An Evaluator that also unbends (``unbend=True``, with ``frame``) reads an image whose reading
is still unsure after framing unbent along arcs (``preprocess.unbent_views``, made from the
crop as loaded: ``meta['source']``, a ``Preprocess(unbend=True)``), through the same queue,
and keeps an unbent view's reading where ``ctc_host.kept_unbent`` says (ranked clearly
first, and no shorter).

Each reading, once read, has its end marks and its mixed case settled by the network
(``text.settle``: 'GATE' read 'GATE.' where the search dropped a mark the network reads,
'oUt' read 'out' where the network is unsure of the U); its confidence is the settled
reading's. Framed views are ranked as read, before settling.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from grcnn_jax.assemble import check_divisible, lexicon_lowercase
from grcnn_jax.models import create_model
from grcnn_jax.text import ctc_host
from grcnn_jax.text import decode
from grcnn_jax.text import settle
from grcnn_jax.text.char_lm import LmDecoder
from grcnn_jax.text.charset import Charset
from grcnn_jax.data.pipeline import BATCH_KEYS
from grcnn_jax.data.preprocess import FRAMES, TURNS, UNSURE, framed_views, unbent_views
from grcnn_jax.text.losses import ctc_loss
from grcnn_jax.text.metrics import WordMetrics
from grcnn_jax.evaluation.overlap import OneBehind



_LOG_UNSURE = float(np.log(UNSURE))


def host_rows(array: jax.Array) -> np.ndarray:
    """The rows of a batch-sharded global array that live on this host, in batch order."""
    if jax.process_count() == 1:
        return np.asarray(array)
    shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
    unique, seen = [], set()
    for s in shards:                              # replicas of one row block appear once
        if (s.index[0].start, s.index[0].stop) not in seen:
            seen.add((s.index[0].start, s.index[0].stop))
            unique.append(np.asarray(s.data))
    return np.concatenate(unique)


def _spelling(lexicon: Sequence[str], word: str) -> str:
    """The first word of ``lexicon`` that lowercases to ``word`` (``word`` if none does)."""
    return next((w.strip() for w in lexicon if w.strip().lower() == word), word)


@functools.partial(jax.jit, static_argnames=("model", "sharding", "likelihood"))
def eval_step(params: Any, batch_stats: Any, batch: dict, *, model: Any, sharding: NamedSharding,
              likelihood: bool = False) -> dict:
    """The model on one global batch, in inference mode; one compilation per model, batch
    shape and sharding, shared by every ``Evaluator``.

    Args:
      params, batch_stats: the variables (replicated).
      batch: ``image`` uint8 [B, H, W]; with ``labels`` / ``label_paddings`` the CTC loss too.
      model: the flax module (static: its config is the compiled program's).
      sharding: the batch's sharding (along the mesh's 'data' axis); outputs keep it.
      likelihood: also log p(best path's text | image), summed over its alignments.

    Returns:
      ``logits`` float32 [B, T, C], ``best_path`` int32 [B, T] (argmax per frame), and
      ``loss`` [B] (nats) and ``log_likelihood`` [B] where asked.
    """
    logits = model.apply({"params": params, "batch_stats": batch_stats}, batch["image"],
                         train=False)
    best_path = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    out = {"logits": logits, "best_path": best_path}
    if "labels" in batch:
        out["loss"] = ctc_loss(logits, batch["labels"], batch["label_paddings"])
    if likelihood:
        out["log_likelihood"] = decode.greedy_log_likelihood(logits, best_path)
    return jax.lax.with_sharding_constraint(out, sharding)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's reading.

    Attributes:
      text: the lexicon-free reading (greedy, or beam search if ``beam_width > 1``).
      confidence: p(text | image) in [0, 1], summed over CTC alignments (None unless
        the Evaluator was built with ``confidence=True``).
      lexicon_text: the most likely word of the image's lexicon ('' if none of its
        words encodes); None without a lexicon.
      lexicon_confidence: p(lexicon_text | image); None without a lexicon.
      turned: 'clockwise' or 'anticlockwise' where the reading is of the image turned a
        quarter that way (an Evaluator that turns tall crops); None: as given.
      framed: 'tighter' or 'looser' where the reading is of the image framed so (an
        Evaluator that frames unsure readings); None: as given.
      unbent: the arc, radians (``preprocess.unbend_arc``'s sign), along which the image
        was unbent for the reading (an Evaluator that unbends); None: not unbent.
    """

    text: str
    confidence: float | None = None
    lexicon_text: str | None = None
    lexicon_confidence: float | None = None
    turned: str | None = None
    framed: str | None = None
    unbent: float | None = None


class _Views:
    """Images' views waiting to be read (tall images turned, unsure ones framed, then
    unbent), and the readings they may replace.

    ``add`` an image's reading, its score and its greedy path's log p with its views and
    their kind (``"turned"``: scored by the greedy path's log p; ``"framed"``: by
    ``Evaluator._read``'s score) and, to unbend it, its ``source`` (``unbend`` given); ``take``
    views to read; ``settle`` each view's reading: when an image's last view is read, it
    returns the image's payload and the reading that scores highest (the earlier on ties),
    unless the image is framed, still unsure and has a source: then its unbent views are
    queued and it returns None; when they are read, an unbent reading replaces the reading
    so far where ``ctc_host.kept_unbent`` says, keeping its lexicon word.

    ``unbend``: (a source, [H, W]) -> (uint8 [V, H, W] views, their V angles), made the
    shape of the image's framed views; None: no unbending.
    """

    NAMES = {"turned": TURNS, "framed": FRAMES}

    def __init__(self, unbend: Callable[[np.ndarray, tuple], tuple[np.ndarray, tuple]] | None
                 = None):
        self.queue: list[tuple[int, int, np.ndarray, Any]] = []   # ticket, view, image, lexicon
        # ticket -> [payload, kind, view names, [(prediction, score, greedy log p)], left,
        #            lexicon, source, the views' [H, W]]
        self._open: dict[int, list] = {}
        self._tickets = 0
        self._unbend = unbend

    def add(self, payload: Any, prediction: Prediction, score: float, views: np.ndarray,
            lexicon: Any, kind: str = "turned", greedy_log_p: float = 0.0,
            source: np.ndarray | None = None, names: Sequence | None = None) -> None:
        ticket, self._tickets = self._tickets, self._tickets + 1
        self._open[ticket] = [payload, kind, names or self.NAMES[kind],
                              [(prediction, float(score), float(greedy_log_p))], len(views),
                              lexicon, source, views.shape[1:]]
        self.queue += [(ticket, k, view, lexicon) for k, view in enumerate(views)]

    def take(self, n: int) -> list[tuple[int, int, np.ndarray, Any]]:
        taken, self.queue = self.queue[:n], self.queue[n:]
        return taken

    def settle(self, ticket: int, view: int, prediction: Prediction, greedy_log_p: float,
               score: float) -> tuple[Any, Prediction] | None:
        entry = self._open[ticket]
        payload, kind, names, candidates, _, lexicon, source, shape = entry
        candidates.append((dataclasses.replace(prediction, **{kind: names[view]}),
                           float(greedy_log_p if kind == "turned" else score),
                           float(greedy_log_p)))
        entry[4] -= 1
        if entry[4]:
            return None
        del self._open[ticket]
        if kind == "unbent":
            so_far = candidates[0][0]
            k = ctc_host.kept_unbent((so_far.text, candidates[0][1]),
                                     [(p.text, score) for p, score, _ in candidates[1:]])
            if k is None:
                return payload, so_far
            # A lexicon's word is picked better from the crop as framed (docs/accuracy.md).
            return payload, dataclasses.replace(candidates[k + 1][0],
                                                lexicon_text=so_far.lexicon_text,
                                                lexicon_confidence=so_far.lexicon_confidence)
        best, best_score, best_log_p = max(candidates, key=lambda c: c[1])   # the first of ties
        if (kind == "framed" and source is not None and self._unbend is not None
                and best_log_p < _LOG_UNSURE):
            views, angles = self._unbend(source, shape)
            if len(views):
                self.add(payload, best, best_score, views, lexicon, "unbent", best_log_p,
                         names=angles)
                return None
        return payload, best


class Evaluator:
    """Runs the model over batches; returns loss and word metrics, or per-image predictions.

    Args:
      model: the GRCNN module.
      charset: decodes the outputs and encodes lexicon words.
      mesh: the device mesh (batch split along its 'data' axis).
      batch_size: the global eval batch size (fixed: one compilation).
      case_sensitive: compare words case-sensitively (default: the standard protocol,
        case-insensitive, letters and digits only).
      beam_width: 1 = greedy decoding; more = prefix beam search on the host (the
        logits are fetched then, [B, T, C] float32 per batch).
      lexicon_lowercase: lowercase lexicon words before encoding (the labels' default
        policy ``unknown_chars='lower'``); words that still do not encode are skipped. For a
        charset with both cases, each word is scored in its case forms instead
        (``decode.encode_lexicons``'s ``case_variants``) and answered as the lexicon spells it.
      confidence: also compute p(text | image) of each lexicon-free reading.
      lm: a character language model (``char_lm.CharLM``) to read with: images whose greedy
        reading is not confident are read by the prefix beam search fused with it, with
        the model's own settings (its beam width unless ``beam_width`` > 1). None: no model.
      turn: also read tall crops turned (see the module doc): the views come with the
        batches (``meta['turned']``, a ``Preprocess(turn=True)``) or to ``predict``.
      frame: also read unsure readings' images framed tighter and looser (see the module
        doc).
      unbend: with ``frame``, also read images still unsure after framing unbent along
        arcs (see the module doc): their crops come with the batches (``meta['source']``,
        a ``Preprocess(unbend=True)``) or to ``predict``; an image without one is not.
      keep_aspect: how unbent views are resized (``preprocess.resize``): as the images were.
    """

    def __init__(self, model: Any, charset: Charset, mesh: Mesh, batch_size: int,
                 case_sensitive: bool = False, beam_width: int = 1,
                 lexicon_lowercase: bool = True, confidence: bool = False, lm: Any = None,
                 turn: bool = False, frame: bool = False, unbend: bool = False,
                 keep_aspect: bool = False):
        if beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {beam_width}")
        if batch_size % mesh.size:
            raise ValueError(f"eval batch size {batch_size} is not divisible by the {mesh.size} "
                             "devices")
        self.model, self.charset, self.batch_size = model, charset, batch_size
        self.case_sensitive, self.beam_width = case_sensitive, beam_width
        self.lexicon_lowercase, self.confidence, self.turn = lexicon_lowercase, confidence, turn
        self.frame, self.unbend, self.keep_aspect = frame, unbend and frame, keep_aspect
        self.case_variants = ctc_host.writes_both_cases(charset)
        self.lm_decoder = None if lm is None else LmDecoder(lm, charset, beam_width=beam_width)
        self._data = NamedSharding(mesh, P("data"))
        self._replicated = NamedSharding(mesh, P())
        self._step = functools.partial(eval_step, model=model, sharding=self._data,
                                       likelihood=(confidence and beam_width == 1)
                                       or lm is not None or turn or frame)
        self._chunk = decode.default_chunk()
        self._lexicon_step = jax.jit(functools.partial(decode.lexicon_log_likelihoods,
                                                       chunk=self._chunk),
                                     in_shardings=(self._data,) * 3, out_shardings=self._data)
        self._word_cache: dict = {}                   # lexicon word -> encoding, across batches
        self._local_batch = batch_size // jax.process_count()

    @property
    def decoding(self) -> str:
        """How lexicon-free readings are decoded, in words (the reports print it)."""
        if self.lm_decoder is not None:
            st = self.lm_decoder.settings
            how = (f"greedy where p >= {st.confident:g}, else beam {st.beam_width} with the "
                   f"language model (weight {st.weight:g}, bonus {st.length_bonus:g})")
        else:
            how = "greedy" if self.beam_width == 1 else f"beam {self.beam_width}"
        return (how + ("; tall crops also read turned" if self.turn else "")
                + ("; unsure readings also framed tighter and looser" if self.frame else "")
                + ("; then, still unsure, unbent along arcs" if self.unbend else ""))

    # ------------------------------------------------------------------------- device
    def _put(self, array: np.ndarray) -> jax.Array:
        return jax.make_array_from_process_local_data(self._data, np.asarray(array))

    def _dispatch(self, params, batch_stats, batch: dict) -> tuple[dict, Any]:
        """Starts the device work for one host batch; returns (outputs, lexicon candidates)."""
        out = self._step(params, batch_stats,
                         {k: self._put(batch[k]) for k in BATCH_KEYS if k in batch})
        lexicons = list(batch.get("meta", {}).get("lexicon") or [])
        encoded = None
        if any(lexicons) or jax.process_count() > 1:
            rows = lexicons + [None] * (self._local_batch - len(lexicons))
            encoded = decode.encode_lexicons(rows, self.charset, max_frames=out["logits"].shape[1],
                                             lowercase=self.lexicon_lowercase, chunk=self._chunk,
                                             cache=self._word_cache,
                                             case_variants=self.case_variants)
            if jax.process_count() > 1:
                # The lexicon step is one program over all hosts: same decision, same shape.
                local = np.array([any(lexicons), *encoded.labels.shape[1:]], np.int64)
                every = multihost_utils.process_allgather(local)
                if not every[:, 0].any():
                    return out, None
                encoded = decode.pad_lexicons(encoded, int(every[:, 1].max()),
                                              int(every[:, 2].max()))
            out["lexicon_scores"] = self._lexicon_step(out["logits"], self._put(encoded.labels),
                                                       self._put(encoded.paddings))
        return out, encoded

    # ------------------------------------------------------------------------- host
    def _read(self, batch: dict, out: dict, encoded
              ) -> tuple[list[Prediction], np.ndarray, np.ndarray | None, list | None]:
        """Fetches one batch's outputs: predictions for its real rows, their indices, their
        greedy paths' log p (None where the step did not compute it) and the readings'
        scores for choosing among framed views (``LmDecoder.rank`` with a language model
        where the Evaluator frames, else the greedy path's log p; of the readings as read:
        the predictions' are settled, ``text.settle``)."""
        rows = np.flatnonzero(np.asarray(batch["mask"]) > 0)
        greedy_log_p = (host_rows(out["log_likelihood"])[rows] if "log_likelihood" in out
                        else None)

        def greedy() -> list[list[int]]:
            return ctc_host.collapse(host_rows(out["best_path"])[rows])

        if self.lm_decoder is not None:
            logits = host_rows(out["logits"])[rows]
            # Framed views are ranked by their readings' exact log p, as recognize and the
            # ONNX reader rank them (the search's own is a lower bound that varies by view).
            found = self.lm_decoder.read(logits, greedy_log_p,
                                         exact=self.confidence or self.frame)
            if self.frame:
                scores = [self.lm_decoder.rank(r, lp) for r, lp in found]
            ids, log_p = settle.reading(logits, [r for r, _ in found], greedy(), self.charset,
                                        [lp for _, lp in found])
        elif self.beam_width > 1:
            logits = host_rows(out["logits"])[rows]
            beams = ctc_host.beam_search_decode(logits, self.charset, self.beam_width)
            ids, _ = settle.reading(logits, [self.charset.encode(t) for t, _ in beams],
                                    greedy(), self.charset)
            log_p = None
            if self.confidence:
                log_p = ctc_host.logits_log_likelihoods(logits, ids).tolist()
        else:
            paths = greedy()
            ids, log_p = settle.reading(lambda: host_rows(out["logits"])[rows], paths, paths,
                                        self.charset, greedy_log_p)
            if not self.confidence:
                log_p = None
        texts = [self.charset.decode(r) for r in ids]
        lexicon = [None] * len(rows)
        if encoded is not None:
            picks = decode.pick_words(host_rows(out["lexicon_scores"])[rows],
                                      [encoded.words[r] for r in rows])
            lexicons = batch["meta"].get("lexicon") or []
            lexicon = [picks[i] if r < len(lexicons) and lexicons[r] else None
                       for i, r in enumerate(rows)]
            if self.case_sensitive and self.lexicon_lowercase and not self.case_variants:
                # Words were lowercased to be scored; answer with the lexicon's own spelling.
                lexicon = [None if pick is None else
                           (_spelling(lexicons[r], pick[0]), pick[1])
                           for pick, r in zip(lexicon, rows)]
        predictions = [
            Prediction(text=t, confidence=None if log_p is None else float(np.exp(log_p[i])),
                       lexicon_text=None if lex is None else lex[0],
                       lexicon_confidence=None if lex is None else float(np.exp(lex[1])))
            for i, (t, lex) in enumerate(zip(texts, lexicon))]
        if self.lm_decoder is None or not self.frame:
            scores = greedy_log_p
        return predictions, rows, greedy_log_p, scores

    def _views_batch(self, views: list, like: dict) -> dict:
        """Up to a host batch of queued views (``_Views.take``) as one batch of ``like``'s
        keys (the compiled step's)."""
        n = len(views)
        image = np.zeros((self._local_batch, *like["image"].shape[1:]), np.uint8)
        for i, (_, _, view, _) in enumerate(views):
            image[i] = view
        batch = {"image": image, "mask": (np.arange(self._local_batch) < n).astype(np.float32),
                 "meta": {"lexicon": [lexicon for _, _, _, lexicon in views]}}
        if "labels" in like:
            batch["labels"] = np.zeros((self._local_batch, *like["labels"].shape[1:]), np.int32)
            batch["label_paddings"] = np.ones(batch["labels"].shape, np.float32)
        return batch

    def _drive(self, params, batch_stats, batches: Iterable[dict],
               consume: Callable[[dict, dict, Any], Any], views_queue: _Views,
               settled: Callable[[Any, Prediction], None],
               after_first: Callable[[], None] | None = None) -> None:
        """Dispatches ``batches``, and the views that reading them queues whenever a whole
        host batch of views waits (at the end, whatever waits); each batch is read while the
        device runs the next one (``OneBehind``): ``consume(batch, outputs, lexicon
        candidates)`` for one of ``batches``, ``settled(payload, prediction)`` for each
        image whose last view is read. ``after_first``: the first batch (which compiles) is
        read at once, then it is called."""
        unread: OneBehind[tuple] = OneBehind()
        last: dict | None = None

        def read(item: tuple | None) -> None:
            if item is None:
                return
            views, batch, out, encoded = item
            if views is None:
                consume(batch, out, encoded)
                return
            predictions, rows, log_p, scores = self._read(batch, out, encoded)
            for r, pred, lp, score in zip(rows, predictions, log_p, scores):
                done = views_queue.settle(views[r][0], views[r][1], pred, lp, score)
                if done is not None:
                    settled(*done)

        def launch_views(final: bool) -> None:
            while self._views_due(views_queue, final):
                views = views_queue.take(self._local_batch)
                batch = self._views_batch(views, last)
                read(unread.push((views, batch, *self._dispatch(params, batch_stats, batch))))

        for i, batch in enumerate(batches):
            last = batch
            read(unread.push((None, batch, *self._dispatch(params, batch_stats, batch))))
            if i == 0 and after_first is not None:
                read(unread.flush())
                after_first()
            launch_views(final=False)
        read(unread.flush())            # the last batch's views first: the fewest batches
        launch_views(final=True)
        read(unread.flush())
        while self._views_due(views_queue, final=True):   # views queued by the last reads
            launch_views(final=True)
            read(unread.flush())

    def _views_due(self, views_queue: _Views, final: bool) -> bool:
        """Whether a batch of views is read now: a whole host batch waits (any host's, with
        several), or ``final`` and any view waits; every host gets the same answer."""
        if not (self.turn or self.frame):
            return False
        due = len(views_queue.queue) >= self._local_batch or (final and bool(views_queue.queue))
        if jax.process_count() > 1:
            due = bool(multihost_utils.process_allgather(np.array(due)).any())
        return due

    def _views_queue(self) -> _Views:
        """A queue of views for one pass (one that unbends where the Evaluator does)."""
        if not self.unbend:
            return _Views()
        return _Views(lambda source, shape: unbent_views(source, *shape, self.keep_aspect))

    def _filler(self, like: dict | None) -> dict:
        shape = (self._local_batch,)
        return {"image": np.zeros(shape + like["image"].shape[1:], np.uint8),
                "labels": np.zeros(shape + like["labels"].shape[1:], np.int32),
                "label_paddings": np.ones(shape + like["labels"].shape[1:], np.float32),
                "mask": np.zeros(shape, np.float32), "meta": {"text": [], "key": [],
                                                              "lexicon": []}}

    # ------------------------------------------------------------------------- API
    def evaluate(self, params: Any, batch_stats: Any, batches: Iterable[dict],
                 predictions: list | None = None) -> dict:
        """One pass over ``batches``; every host must call it (multi-host: in lockstep).

        Args:
          params, batch_stats: the model variables (numpy or device arrays).
          batches: loader batches (``pipeline`` format: image, labels, label_paddings,
            mask, meta with text and optionally lexicon).
          predictions: if a list, one dict per image is appended: key, text (target),
            prediction, lexicon_prediction (None without a lexicon), and confidence
            (p(prediction | image)) if the Evaluator computes it.

        Returns:
          loss (mean CTC NLL, nats), word_accuracy, normalized_edit_distance, count,
          images_per_s (steady state: excludes the first batch, which compiles, unless it
          is the only one); with lexicons also lexicon_word_accuracy, lexicon_count (the
          images that have a lexicon) and lexicon_words_skipped.
        """
        params, batch_stats = jax.device_put((params, batch_stats), self._replicated)
        metrics = WordMetrics(case_sensitive=self.case_sensitive)
        lexicon_metrics = WordMetrics(case_sensitive=self.case_sensitive)
        acc = {"loss": 0.0, "count": 0, "skipped_words": 0}

        views_queue = self._views_queue()

        def record(pred: Prediction, target: str, entry: dict | None) -> None:
            """One image's final reading."""
            metrics.update([pred.text], [target])
            if pred.lexicon_text is not None:
                lexicon_metrics.update([pred.lexicon_text], [target])
            if entry is not None:
                entry.update(prediction=pred.text, lexicon_prediction=pred.lexicon_text,
                             **({"confidence": pred.confidence} if self.confidence else {}))

        def consume(batch, out, encoded):
            preds, rows, log_p, scores = self._read(batch, out, encoded)
            meta = batch["meta"]
            targets = [meta["text"][r] for r in rows]
            keys = meta.get("key") or [None] * (max(rows, default=-1) + 1)
            turned = meta.get("turned") if self.turn else None
            sources = meta.get("source") if self.unbend else None
            lexicons = meta.get("lexicon") or []
            for i, (r, target, pred) in enumerate(zip(rows, targets, preds)):
                entry = None
                if predictions is not None:         # in order; filled in by ``record``
                    entry = {"key": keys[r], "text": target}
                    predictions.append(entry)
                lexicon = lexicons[r] if r < len(lexicons) else None
                if turned is not None and turned[r] is not None:
                    views_queue.add((target, entry), pred, log_p[i], turned[r], lexicon)
                elif self.frame and log_p[i] < _LOG_UNSURE:
                    views_queue.add((target, entry), pred, scores[i],
                                    framed_views(np.asarray(batch["image"][r])), lexicon, "framed",
                                    log_p[i], None if sources is None else sources[r])
                else:
                    record(pred, target, entry)
            if encoded is not None:
                acc["skipped_words"] += len(encoded.skipped)
            acc["loss"] += float(host_rows(out["loss"])[rows].sum())
            acc["count"] += len(rows)
            return len(rows)

        def host_batches() -> Iterable[dict]:
            last = None
            for batch in batches:
                if jax.process_count() > 1:
                    multihost_utils.process_allgather(np.array(True))
                last = batch
                yield batch
            if jax.process_count() > 1:           # run until every host is out of data
                while multihost_utils.process_allgather(np.array(False)).any():
                    yield self._filler(last)

        timing = {"start": None, "images": 0}

        def consume_timed(batch, out, encoded) -> None:
            n = consume(batch, out, encoded)
            if timing["start"] is not None:       # the first batch compiles: not timed
                timing["images"] += n

        start = time.perf_counter()
        self._drive(params, batch_stats, host_batches(), consume_timed, views_queue,
                    lambda payload, best: record(best, *payload),
                    after_first=lambda: timing.update(start=time.perf_counter()))
        end = time.perf_counter()
        steady_start, steady_images = timing["start"], timing["images"]

        totals = np.array([metrics.correct, metrics.count, metrics.ned_sum, acc["loss"],
                           lexicon_metrics.correct, lexicon_metrics.count, acc["skipped_words"],
                           steady_images], np.float64)
        if jax.process_count() > 1:
            # (float32 on the wire without jax x64: exact for counts below 2**24)
            totals = multihost_utils.process_allgather(totals).astype(np.float64).sum(axis=0)
        correct, n, ned_sum, loss_sum, lex_correct, lex_n, skipped_words, steady = (
            float(x) for x in totals)           # plain floats: JSON and the metric writer
        if steady > 0:
            speed = steady / max(end - steady_start, 1e-9)
        else:
            speed = n / max(end - start, 1e-9)
        result = {"loss": loss_sum / max(n, 1), "word_accuracy": correct / max(n, 1),
                  "normalized_edit_distance": ned_sum / max(n, 1), "count": int(n),
                  "images_per_s": float(speed)}
        if lex_n > 0:
            result.update(lexicon_word_accuracy=lex_correct / lex_n, lexicon_count=int(lex_n),
                          lexicon_words_skipped=int(skipped_words))
        return result

    def predict(self, params: Any, batch_stats: Any, images: np.ndarray,
                lexicons: Sequence[Sequence[str] | None] | None = None,
                turned: Sequence[np.ndarray | None] | None = None,
                sources: Sequence[np.ndarray | None] | None = None) -> list[Prediction]:
        """Reads preprocessed images (single process).

        Args:
          images: uint8 [N, H, W], already resized like the loader does.
          lexicons: per image a word list (or None), or None for no lexicon decoding.
          turned: per image its ``preprocess.turned_views`` (uint8 [2, H, W] or None), read
            where the Evaluator turns; None: none is.
          sources: per image its ``preprocess.source_image`` (uint8 [h, w] or None), unbent
            where the Evaluator unbends; None: none is.

        Returns:
          N ``Prediction``s, in order.
        """
        if jax.process_count() > 1:
            raise NotImplementedError("predict runs in a single process")
        images = np.asarray(images, np.uint8)
        if images.ndim != 3:
            raise ValueError(f"images must be uint8 [N, H, W], got shape {images.shape}")
        params, batch_stats = jax.device_put((params, batch_stats), self._replicated)
        results: list[Prediction] = []
        views_queue = self._views_queue()

        def take(batch, out, encoded):
            preds, rows, log_p, scores = self._read(batch, out, encoded)
            for i, (r, pred) in enumerate(zip(rows, preds)):
                k = batch["start"] + int(r)
                lexicon = None if lexicons is None else lexicons[k]
                if self.turn and turned is not None and turned[k] is not None:
                    views_queue.add(len(results), pred, log_p[i], turned[k], lexicon)
                elif self.frame and log_p[i] < _LOG_UNSURE:
                    views_queue.add(len(results), pred, scores[i], framed_views(images[k]),
                                    lexicon, "framed", log_p[i],
                                    None if sources is None or not self.unbend else sources[k])
                results.append(pred)

        def host_batches() -> Iterable[dict]:
            for start in range(0, len(images), self.batch_size):
                chunk = images[start:start + self.batch_size]
                n = len(chunk)
                image = np.zeros((self.batch_size, *images.shape[1:]), np.uint8)
                image[:n] = chunk
                batch = {"image": image,
                         "mask": (np.arange(self.batch_size) < n).astype(np.float32),
                         "meta": {}, "start": start}
                if lexicons is not None:
                    batch["meta"]["lexicon"] = list(lexicons[start:start + n])
                yield batch

        self._drive(params, batch_stats, host_batches(), take, views_queue,
                    results.__setitem__)
        return results


def make_evaluator(config: ml_collections.ConfigDict, charset: Charset, mesh: Mesh,
                   batch_size: int | None = None, *, what: str = "config.eval_batch_size",
                   case_sensitive: bool = False, beam_width: int = 1,
                   confidence: bool = False, lm: Any = None, turn: bool = False,
                   frame: bool = False, unbend: bool = False) -> Evaluator:
    """The ``Evaluator`` of ``config``'s model, ``batch_size`` (default
    ``config.eval_batch_size``; ``what`` names it in errors) and lexicon case policy;
    ``lm``: the language model to read with (an ``InferenceCheckpoint``'s ``lm``); ``turn``:
    also read tall crops turned; ``frame``: also read unsure readings' images framed;
    ``unbend``: with ``frame``, those still unsure unbent too."""
    batch_size = batch_size or config.eval_batch_size
    check_divisible(batch_size, what)
    return Evaluator(create_model(config.model, charset.num_classes), charset, mesh,
                     batch_size=batch_size, case_sensitive=case_sensitive,
                     beam_width=beam_width, confidence=confidence,
                     lexicon_lowercase=lexicon_lowercase(config), lm=lm, turn=turn,
                     frame=frame, unbend=unbend, keep_aspect=bool(config.data.keep_aspect))
