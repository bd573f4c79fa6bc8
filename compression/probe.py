"""Linear probes on frozen embeddings: logistic regression whose strength is
chosen on a validation split carved from train (never on test)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

C_GRID = (0.1, 1.0, 10.0, 100.0)


@dataclass
class Probe:
    classifier: object  # sklearn LogisticRegression, refit on all of train with the chosen C
    C: float
    val_accuracy: float


def fit_probe(X_train: np.ndarray, y_train: np.ndarray, seed: int = 0, val_fraction: float = 0.1) -> Probe:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=val_fraction, random_state=seed,
                                                  stratify=y_train)
    best_C, best_acc = C_GRID[0], -1.0
    for C in C_GRID:
        clf = LogisticRegression(C=C, max_iter=2000)
        clf.fit(X_fit, y_fit)
        acc = float(clf.score(X_val, y_val))
        if acc > best_acc:
            best_C, best_acc = C, acc
    clf = LogisticRegression(C=best_C, max_iter=2000)
    clf.fit(X_train, y_train)
    return Probe(clf, best_C, best_acc)
