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

    X_fit, X_val, y_fit, y_val = train_test_split(
        X_train, y_train, test_size=val_fraction, random_state=seed, stratify=y_train
    )
    # One path over the grid, each fit warm-started from the last (weaker) one's optimum: the strong-C
    # fits, which take lbfgs thousands of iterations from zero, start near their answer.
    path = LogisticRegression(max_iter=2000, warm_start=True)
    best_C, best_acc, best_coef = C_GRID[0], -1.0, None
    for C in C_GRID:
        path.set_params(C=C)
        path.fit(X_fit, y_fit)
        acc = float(path.score(X_val, y_val))
        if acc > best_acc:
            best_C, best_acc, best_coef = C, acc, (path.coef_.copy(), path.intercept_.copy())
    clf = LogisticRegression(C=best_C, max_iter=2000, warm_start=True)
    clf.coef_, clf.intercept_ = best_coef  # refit on all of train from the chosen C's solution
    clf.fit(X_train, y_train)
    return Probe(clf, best_C, best_acc)
