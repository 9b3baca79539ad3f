"""The one HTML page the API serves: where the emailed password link (PASSWORD_RESET_URL, for a
reset and for a new account's first password) leads by default. It posts the token from its
own query string and the new password, as JSON, to `POST` on its own path."""

import base64
import hashlib

from flask import Response

SCRIPT = """
const form = document.getElementById("reset");
const result = document.getElementById("result");
const token = new URLSearchParams(window.location.search).get("token");
if (!token) {
  form.hidden = true;
  result.textContent = "This link has no token: open the link from your email again.";
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = form.elements.password.value;
  if (password !== form.elements.repeat.value) {
    result.textContent = "The two passwords differ.";
    return;
  }
  form.elements.save.disabled = true;
  try {
    const response = await fetch(window.location.pathname, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({token, password}),
    });
    const body = await response.json();
    if (response.ok) {
      form.hidden = true;
      result.textContent = "Your password is saved. You can log in with it now.";
    } else {
      const reasons = (body.errors && body.errors.password) || [];
      result.textContent = [body.detail || "The password was not saved.", ...reasons].join(" ");
    }
  } catch (error) {
    result.textContent = "The server could not be reached. Try again.";
  }
  form.elements.save.disabled = false;
});
"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Choose a new password</title>
</head>
<body>
<main>
<h1>Choose a new password</h1>
<form id="reset">
<p><label>New password<br>
<input type="password" name="password" autocomplete="new-password" required></label></p>
<p><label>The same again<br>
<input type="password" name="repeat" autocomplete="new-password" required></label></p>
<p><button type="submit" name="save">Save the password</button></p>
</form>
<p id="result" role="status"></p>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# Only this page's own script runs, and it talks to this server only.
POLICY = (
    f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def reset_password_page() -> Response:
    response = Response(PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["Cache-Control"] = "no-store"
    return response
