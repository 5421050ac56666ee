// The API reference (/docs): Swagger UI 5 over the document named by #swagger-ui's
// data-openapi attribute.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("swagger-ui");
    window.ui = SwaggerUIBundle({
      url: box.getAttribute("data-openapi"),
      domNode: box,
      deepLinking: true,
      layout: "BaseLayout",
      // One line per tag: the page stays short; a tag opens its operations.
      docExpansion: "none",
      presets: [SwaggerUIBundle.presets.apis],
      // Validation would send the document to validator.swagger.io: nothing leaves loopml.
      validatorUrl: null
    });
  });
}());
