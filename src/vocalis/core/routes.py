"""A router's routes as the app's own, so that a request is matched against one flat list.

FastAPI (0.16x) keeps an included router as one entry of the app's routes, and derives its
routes for the app (the app's `responses`, dependency overrides…) behind it: every request
then walks those entries, each re-checking whether its router changed (a recursive walk)
and swapping per-route context in and out of the request's scope around every candidate
it tries. `include_flat(app, router)` includes the router as FastAPI does (its lifespan
and event handlers join the app's), then puts its routes into the app's router the way
FastAPI itself adds a route to the app (`add_api_route`, `add_api_websocket_route`, the
way `include_router` did before included routers were kept whole): the same path, the
app's `responses` and dependency overrides, the same operation in the OpenAPI document;
matched directly, as a route the app declared itself.

A router holding anything else (a nested router, a mount, a frontend) stays included as a
whole. The routers must carry their prefix themselves (`APIRouter(prefix=...)`): nothing is
given at include time.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter, APIWebSocketRoute


def include_flat(app: FastAPI, router: APIRouter) -> None:
    """Include `router` in `app`, its routes matched as the app's own (see the module)."""
    app.include_router(router)
    if not all(type(route) in (APIRoute, APIWebSocketRoute) for route in router.routes):
        return
    target = app.router
    included = target.routes.pop()
    if getattr(included, "original_router", None) is not router:  # not FastAPI's own include
        target.routes.append(included)
        return
    for route in router.routes:
        if isinstance(route, APIRoute):
            target.add_api_route(
                route.path,
                route.endpoint,
                response_model=route.response_model,
                status_code=route.status_code,
                tags=route.tags,
                dependencies=route.dependencies,
                summary=route.summary,
                description=route.description,
                response_description=route.response_description,
                responses=route.responses,
                deprecated=route.deprecated,
                methods=route.methods,
                operation_id=route.operation_id,
                response_model_include=route.response_model_include,
                response_model_exclude=route.response_model_exclude,
                response_model_by_alias=route.response_model_by_alias,
                response_model_exclude_unset=route.response_model_exclude_unset,
                response_model_exclude_defaults=route.response_model_exclude_defaults,
                response_model_exclude_none=route.response_model_exclude_none,
                include_in_schema=route.include_in_schema,
                response_class=route.response_class,
                name=route.name,
                route_class_override=type(route),
                callbacks=route.callbacks,
                openapi_extra=route.openapi_extra,
                generate_unique_id_function=route.generate_unique_id_function,
                strict_content_type=route.strict_content_type,
            )
        else:
            assert isinstance(route, APIWebSocketRoute)
            target.add_api_websocket_route(
                route.path, route.endpoint, name=route.name, dependencies=route.dependencies
            )
