/* The login in front of the pages (src/roomcast/app/login.py): password and/or OpenID Connect. */
(function () {
  'use strict';
  const next = new URLSearchParams(location.search).get('next') || '/';
  const $ = (id) => document.getElementById(id);
  $('oidc-link').href = '/login/oidc?' + new URLSearchParams({next});

  fetch('/login/methods', {cache: 'no-store'}).then((r) => r.json()).then((methods) => {
    $('password-login').hidden = !methods.password;
    $('oidc-login').hidden = !methods.oidc;
    if (methods.identity) {
      $('logged-in').hidden = false;
      $('logged-in').textContent = 'Logged in as ' + methods.identity + '.';
    }
    if (!methods.password && !methods.oidc) $('status').textContent = 'no login is configured on this server';
  });

  $('password-login').addEventListener('submit', async (event) => {
    event.preventDefault();
    const response = await fetch('/login', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({username: $('username').value, password: $('password').value, next}),
    });
    const body = await response.json();
    if (!response.ok) {
      $('login-error').textContent = body.error.code + ': ' + body.error.message;
      $('login-error').dataset.code = body.error.code;
      return;
    }
    location.assign(body.next);
  });
})();
