"""``/api/v1/templates``: what templates exist, and previews that send nothing."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import Response

from api.deps import RendererDep, require
from api.problems import COMMON_PROBLEMS, ApiProblem, problem_doc
from api.responses import OrjsonResponse
from api.schemas import RenderedOut, RenderRequest, TemplateList

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/templates", tags=["templates"], dependencies=[Depends(require("read"))]
)


@router.get("", response_model=TemplateList, summary="Templates, locales and variables")
async def list_templates(renderer: RendererDep) -> Response:
    templates = []
    for name in renderer.template_names():
        info = renderer.describe(name)
        templates.append(
            {
                "name": info.name,
                "description": info.description,
                "locales": list(info.locales),
                "required_variables": list(info.required_variables),
                "optional_variables": list(info.optional_variables),
                "example_context": dict(info.example_context),
                "category": info.category,
            }
        )
    return OrjsonResponse({"default_locale": renderer.default_locale, "templates": templates})


@router.post(
    "/{name}/render",
    response_model=RenderedOut,
    summary="Render a template without sending",
    responses={
        **problem_doc(404, "No template by that name."),
        **problem_doc(422, "A variable the template needs is missing; `errors` names it."),
        **COMMON_PROBLEMS,
    },
)
async def render_template(name: str, body: RenderRequest, renderer: RendererDep) -> Response:
    if not renderer.has_template(name):
        raise ApiProblem(404, f"no template named {name!r}", slug="template-not-found")
    locale = renderer.resolve_locale(name, body.locale)
    renderer.check_context(name, body.context)
    rendered = renderer.render(name, body.context, locale=locale)
    return OrjsonResponse(
        {
            "subject": rendered.subject,
            "html": rendered.html,
            "text": rendered.text,
            "locale": locale,
        }
    )
