"""Hand-written English sentences for measuring sentence-embedding models.

``PAIRS`` holds paraphrase pairs (two sentences saying the same thing in other words) on
many topics; several pairs share a topic, so a sentence's nearest neighbour is its
partner only when the embedding captures meaning, not just the subject. ``CALIBRATION``
holds other sentences, for calibrating quantizers without touching the evaluation pairs.
The pairs live in :mod:`quantlens.zoo.sentence_pairs`.
"""

from __future__ import annotations

from quantlens.zoo.sentence_pairs import PAIRS

CALIBRATION: tuple[str, ...] = (
    "The train to the airport runs every fifteen minutes.",
    "Please send me the invoice by email.",
    "A large bowl of noodles costs less than five dollars here.",
    "The goalkeeper saved a penalty in the last minute.",
    "Mars has two small moons.",
    "The committee will announce its decision tomorrow.",
    "I prefer tea to coffee in the morning.",
    "The bridge was built in the nineteenth century.",
    "Our software runs on both Linux and Windows.",
    "Autumn leaves turn red and yellow in October.",
    "The patient was discharged from hospital yesterday.",
    "The orchestra rehearsed the symphony for weeks.",
    "The shop on the corner sells fresh bread.",
    "She painted a portrait of her grandmother.",
    "Mortgage rates have started to fall.",
    "The hikers reached the summit at sunrise.",
    "He fixed the bicycle's flat tyre.",
    "Most mammals give birth to live young.",
    "The festival attracts visitors from all over the world.",
    "The server logs every request it receives.",
    "It snowed lightly overnight.",
    "Chess requires patience and planning.",
    "The recipe calls for two cups of flour.",
    "The senator gave a long speech about healthcare.",
    "Our flat is on the fourth floor.",
    "The vaccine must be kept in a refrigerator.",
    "Volcanoes can change the climate for years.",
    "The app sends a reminder before each appointment.",
    "They celebrated their anniversary at a small restaurant.",
    "The bus was late again this morning.",
    "The ancient manuscript was written on parchment.",
    "Prices at the market go up in winter.",
)


def all_sentences() -> list[str]:
    """The evaluation sentences: each pair's two sentences next to each other (2i, 2i+1)."""
    return [s for pair in PAIRS for s in pair]


def partner_indices() -> list[int]:
    """For sentence ``i`` of :func:`all_sentences`, the index of its paraphrase (``i ^ 1``)."""
    return [i ^ 1 for i in range(2 * len(PAIRS))]


def calibration_sentences() -> list[str]:
    """Sentences for calibrating quantizers, disjoint from the evaluation pairs."""
    return list(CALIBRATION)


__all__ = ["CALIBRATION", "PAIRS", "all_sentences", "calibration_sentences", "partner_indices"]
