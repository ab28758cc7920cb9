"""``synthetic_reviews``: a generated, labelled review corpus whose labels need word order.

How it is made (deterministic: a fixed generator seed and the ``size`` option; the study
seed only chooses the train / validation / test split):

- A **clause** talks about one aspect (``the plot``, ``the acting``...) with a verb and an
  adjective: ``the acting was [not|never|hardly] [really|very|...] great``. Its polarity is
  the adjective's polarity, flipped when a negator precedes it. Each clause is built for a
  target polarity: half the time with an adjective of that polarity and no negator, half the
  time with an adjective of the opposite polarity *and* a negator. So neither the adjective
  nor the negator alone says anything about the clause: only their combination does (an
  XOR, which a linear bag of words cannot represent). An optional intensifier between the
  negator and the adjective breaks the ``not good`` bigram.
- A **review** (label ``positive`` or ``negative``, balanced) is one of:
  - one clause of the label's polarity (30%);
  - ``A but B`` (30%) or ``although A , B`` (15%): B has the label's polarity, A the
    opposite one, so the clause after the contrast word dominates;
  - ``B even though A`` (10%): the first clause dominates, the one after ``even though``
    is conceded;
  - ``A and B`` (15%): both clauses of the label's polarity.
  Optional openers and closers (``honestly ,``, ``for me``) add neutral words.

In the contrast reviews both polarities' words occur, in both orders, so a unigram bag of
words is near chance on them; models that see the order (CNN, RNN, transformer, or n-gram
bags in part) can learn the rules. Nothing is random at run time beyond this generator.
"""

from __future__ import annotations

import random

ASPECTS = ("the plot", "the acting", "the music", "the ending", "the dialogue", "the pacing",
           "the cast", "the camera work", "the story", "the script", "the soundtrack", "the visuals")
VERBS = ("was", "is", "felt", "seemed")
POSITIVE = ("good", "great", "excellent", "wonderful", "enjoyable", "brilliant", "fun", "solid")
NEGATIVE = ("bad", "awful", "boring", "terrible", "dull", "weak", "poor", "messy")
NEGATORS = ("not", "never", "hardly")
INTENSIFIERS = ("really", "very", "truly", "quite", "particularly")
OPENERS = ("honestly ,", "overall ,", "i think", "in my opinion ,", "well ,")
CLOSERS = ("to be honest", "for me", "in the end", "if you ask me")
LABELS = ("negative", "positive")
GENERATOR_SEED = 20240601


def clause(rng: random.Random, positive: bool) -> str:
    """One clause of the given polarity (see the module docstring)."""
    negated = rng.random() < 0.5
    adjective_positive = positive != negated
    words = [rng.choice(ASPECTS), rng.choice(VERBS)]
    if negated:
        words.append(rng.choice(NEGATORS))
    if rng.random() < 0.5:
        words.append(rng.choice(INTENSIFIERS))
    words.append(rng.choice(POSITIVE if adjective_positive else NEGATIVE))
    return " ".join(words)


def review(rng: random.Random, positive: bool) -> str:
    """One review whose label is ``positive`` (see the module docstring for the templates)."""
    r = rng.random()
    if r < 0.30:
        body = clause(rng, positive)
    elif r < 0.60:
        body = f"{clause(rng, not positive)} but {clause(rng, positive)}"
    elif r < 0.75:
        body = f"although {clause(rng, not positive)} , {clause(rng, positive)}"
    elif r < 0.85:
        body = f"{clause(rng, positive)} even though {clause(rng, not positive)}"
    else:
        body = f"{clause(rng, positive)} and {clause(rng, positive)}"
    if rng.random() < 0.3:
        body = f"{rng.choice(OPENERS)} {body}"
    if rng.random() < 0.2:
        body = f"{body} {rng.choice(CLOSERS)}"
    return body


def generate(size: int, seed: int = GENERATOR_SEED) -> tuple[list[str], list[int]]:
    """``size`` reviews and their labels (0 negative, 1 positive), balanced, deterministic."""
    rng = random.Random(seed)
    labels = [i % 2 for i in range(size)]
    rng.shuffle(labels)
    return [review(rng, bool(y)) for y in labels], labels
