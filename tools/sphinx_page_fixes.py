"""Build glue for the rendered pages (a local Sphinx extension, named in _config.yml).

sphinx-thebe registers its small configuration script each time Sphinx fires
``env-before-read-docs``, which a Jupyter Book build does twice: every page then declared
``const THEBE_JS_URL`` twice (a JavaScript error), and sphinx-togglebutton's selector twice. This drops a script that a page would
include a second time.
"""


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        key = (getattr(script, "filename", str(script)) or "",  # None and "" both mean inline
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    # last, after the theme's handlers have added their scripts
    app.connect("html-page-context", _drop_repeated_scripts, priority=999)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
