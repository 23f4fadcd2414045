"""The progress bar of kanime's long jobs (`fit`, `prepare`, `evaluate`, ...).

Examples:
    >>> bar = progress_bar("[bold]training", after=["{task.fields[losses]}"])
    >>> [type(c).__name__ for c in bar.columns]  # doctest: +NORMALIZE_WHITESPACE
    ['TextColumn', 'BarColumn', 'MofNCompleteColumn', 'TimeElapsedColumn',
     'TimeRemainingColumn', 'TextColumn']
"""


def progress_bar(label="{task.description}", after=(), before_time=()):
    """A `rich.progress.Progress`: label, bar, `done/total`, elapsed and remaining time.

    Args:
        label: the leading text column (rich markup; `{task.description}` by default).
        after: text column templates shown after the times (such as the losses).
        before_time: text column templates shown between `done/total` and the times.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(text) for text in before_time),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *(TextColumn(text) for text in after),
    )
