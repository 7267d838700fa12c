"""Sphinx configuration of the course's site (``make site``).

``site/build_site.py`` stages the sources (this folder's pages, the executed notebooks, the study
results) and runs Sphinx on them with this folder as its configuration directory. The notebooks
are rendered as they were executed by ``make course``: nothing is run here.
"""

from __future__ import annotations

project = "Land cover segmentation from sparse labels"
author = "the course's authors"
html_title = "Land cover segmentation from sparse labels"

extensions = ["myst_nb"]

# The executed copies in build/ are the outputs to show: never execute a notebook again.
nb_execution_mode = "off"
nb_merge_streams = True
# stderr holds the training progress bars, one block per epoch, and the fast mode's expected
# warnings (no pretrained weights offline): on a page to read they are noise, the printed lines stay
nb_output_stderr = "remove"
# A headless run leaves no widget state: show the static figure beside a widget, not an empty view.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

myst_enable_extensions = ["dollarmath"]
exclude_patterns = ["**/.ipynb_checkpoints"]

html_theme = "furo"
html_baseurl = "https://landcover-course.github.io/sparse-label-segmentation/"
# The pages are the course to read: the executed notebooks are not republished as page sources.
html_copy_source = False
html_show_sourcelink = False
html_show_copyright = False
