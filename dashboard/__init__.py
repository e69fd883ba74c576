"""What every dashboard page shares, one job per module: the entry-point guard (guard), the
cached artifacts (cache), messages about them (notices), number and column formats (format),
the glossary (glossary), chart pieces (charts), small widgets (widgets), and every use of a
Streamlit internal (internals). Import each name from the module that defines it.

It lives next to streamlit_app.py, not in pages/: Streamlit's legacy multipage mode lists every
``pages/*.py`` as a page.
"""

from core.base.memory import use_returning_allocators

# A dropped upload's memory goes back to the OS instead of staying with the server (core.base.memory).
use_returning_allocators()
