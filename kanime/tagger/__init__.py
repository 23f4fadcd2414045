"""The second model: a multi-label tagger that gives untagged faces their 34 tags.

- `kanime.tagger.model`: the network (`build_tagger`);
- `kanime.tagger.fit`: `fit_tagger`, training it from a recipe into a run folder
  (`kanime fit-tagger`), with a held-out per-tag report;
- `kanime.tagger.apply`: `Tagger`, which loads a tagger (kanime's own or a
  DeepDanbooru-style project) and tags images, folders (`kanime tag`) and
  prepared faces, and the features t-SNE and FID read from it.
"""

from kanime.tagger.apply import Tagger
from kanime.tagger.fit import fit_tagger
from kanime.tagger.model import build_tagger

__all__ = ["Tagger", "build_tagger", "fit_tagger"]
