"""The review app's HTTP edge: FastAPI routes over :class:`~tunesmith.review.session.ReviewSession`.

Pages are Jinja2 templates with one stylesheet and one small script served by the app (no
build step, no CDN). Forms post and redirect, so every page works without JavaScript; the
script only adds the keys 1-4. Bad requests get a 4xx JSON error (``{"error": {"message",
"hint"}}``) and the app keeps serving. The reviewer's name lives in a cookie, one per browser
session.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any
from urllib.parse import quote, unquote

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from tunesmith import runfiles
from tunesmith.errors import TunesmithError
from tunesmith.review.export import corrections_from_marks, preference_rows
from tunesmith.review.session import ReviewSession
from tunesmith.review.store import CHOICES, UnknownItem

COOKIE = "tunesmith_reviewer"
_PACKAGE = files("tunesmith.review")


class VoteRequest(BaseModel):
    pair_id: str
    reviewer: str
    choice: str
    note: str = ""


def _error(exc: TunesmithError) -> JSONResponse:
    status = 404 if isinstance(exc, UnknownItem) else 400
    return JSONResponse({"error": {"message": exc.message, "hint": exc.hint}}, status_code=status)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def create_app(session: ReviewSession) -> FastAPI:
    app = FastAPI(title=f"tunesmith review: {session.run.name}", docs_url=None, redoc_url=None)
    templates = Jinja2Templates(directory=str(_PACKAGE / "templates"))
    templates.env.filters["fmt"] = _fmt
    app.mount("/static", StaticFiles(directory=str(_PACKAGE / "static")), name="static")
    app.exception_handler(TunesmithError)(lambda request, exc: _error(exc))

    def reviewer_of(request: Request) -> str:
        return unquote(request.cookies.get(COOKIE, ""))

    def page(request: Request, name: str, tab: str, **context: Any) -> Response:
        reviewer = reviewer_of(request)
        tabs = [("review", "Review", "/review")] if session.pair_ids else []
        tabs += [("results", "Results", "/results"), ("playground", "Playground", "/playground")]
        if session.has_errors:
            tabs.append(("errors", "Errors", "/errors"))
        return templates.TemplateResponse(request, name, {
            "run": session.run, "reviewer": reviewer, "tab": tab, "tabs": tabs, **context})

    def back(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    @app.get("/")
    def index() -> RedirectResponse:
        return back("/review" if session.pair_ids else "/errors" if session.has_errors else "/playground")

    @app.post("/reviewer")
    def set_reviewer(name: str = Form(""), next: str = Form("/review")) -> RedirectResponse:
        # An empty name signs the reviewer out ("switch reviewer").
        response = back(next if next.startswith("/") else "/review")
        response.set_cookie(COOKIE, quote(name.strip()), samesite="strict", httponly=True)
        return response

    @app.get("/review")
    def review(request: Request) -> Response:
        reviewer = reviewer_of(request)
        if not reviewer:
            return page(request, "name.html", "review", next="/review")
        return page(request, "review.html", "review", reviewer=reviewer, choices=CHOICES,
                    item=session.next_item(reviewer), progress=session.progress(reviewer))

    @app.post("/review/vote")
    def vote_form(request: Request, pair_id: str = Form(...), choice: str = Form(...),
                  note: str = Form("")) -> RedirectResponse:
        session.vote(pair_id, reviewer_of(request), choice, note)
        return back("/review")

    @app.post("/api/votes")
    def vote_api(body: VoteRequest) -> dict[str, Any]:
        vote = session.vote(body.pair_id, body.reviewer, body.choice, body.note)
        progress = session.progress(vote.reviewer)
        return {"pair_id": vote.pair_id, "winner": vote.winner,
                "progress": {"done": progress.done, "total": progress.total}}

    @app.get("/api/progress")
    def progress_api(reviewer: str) -> dict[str, int]:
        progress = session.progress(reviewer)
        return {"done": progress.done, "total": progress.total}

    @app.get("/api/results")
    def results_api() -> dict[str, Any]:
        return session.results().to_dict()

    @app.get("/results")
    def results(request: Request) -> Response:
        return page(request, "results.html", "results", results=session.results(), marks=len(session.store.marks()))

    @app.get("/playground")
    def playground(request: Request) -> Response:
        return page(request, "playground.html", "playground", text="", answers=None)

    @app.post("/playground")
    def playground_answer(request: Request, text: str = Form("")) -> Response:
        if session.playground is None:
            raise UnknownItem("this review has no playground.")
        return page(request, "playground.html", "playground", text=text,
                    answers=session.playground.answer(text))

    @app.get("/errors")
    def errors(request: Request, label: str = "", predicted: str = "") -> Response:
        return page(request, "errors.html", "errors", rows=session.errors(label, predicted),
                    labels=session.error_labels(), label=label, predicted=predicted,
                    reviewer=reviewer_of(request), query=request.url.query)

    @app.post("/errors/mark")
    def mark(request: Request, index: int = Form(...), corrected: str = Form(""), note: str = Form(""),
             query: str = Form("")) -> RedirectResponse:
        session.mark(index, reviewer_of(request), corrected or None, note)
        return back(f"/errors?{query}#e{index}")

    @app.post("/errors/unmark")
    def unmark(request: Request, index: int = Form(...), query: str = Form("")) -> RedirectResponse:
        session.unmark(index, reviewer_of(request))
        return back(f"/errors?{query}#e{index}")

    def jsonl(rows: list[dict[str, Any]], filename: str) -> PlainTextResponse:
        return PlainTextResponse("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                 media_type="application/jsonl",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @app.get("/export/preferences.jsonl")
    def export_preferences() -> PlainTextResponse:
        return jsonl(preference_rows(session.store.pairs(), session.store.votes()), runfiles.PREFERENCES)

    @app.get("/export/corrections.jsonl")
    def export_corrections() -> PlainTextResponse:
        rows = [c.to_dict() for c in corrections_from_marks(session.store.marks())]
        return jsonl(rows, runfiles.CORRECTIONS)

    return app
