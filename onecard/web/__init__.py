"""web: the local web app over every capability (`onecard web`). Floor 4: pages and API, no project logic.

    settings.py   WebSettings: host, port, token, data dir, registered folders, upload limit, CORS
    errors.py     every error as JSON {"error", "fix"}: onecard's errors 4xx, validation 422, unexpected 500
    security.py   the token guard, safe_path (requests stay inside the registered folders), save_upload
    app.py        create_app(settings): routers (routes/<area>.py), pages (static/<page>.html), guards
    server.py     `onecard web`: a token generated beyond localhost, folders checked, uvicorn
    routes/       one APIRouter per area: start, fit, runs, chat, rag, openai (/v1), jobs, recipe
    static/       shell.css + shell.js (nav, api(), SSE reader, SVG charts) and one <page>.html + .js per page
"""

__all__: list[str] = []
