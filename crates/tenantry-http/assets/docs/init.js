// The API reference of this server: its own /openapi.json, with "Authorize" taking a key
// (a tenant key or the operator key) for "Try it out". Nothing is fetched from elsewhere.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
