// fctrace web UI: the tenant token. Every request of the page goes through `authFetch`,
// which sends the token kept for this browser session (sessionStorage, never the URL);
// when the daemon answers 401 (it runs with tenants) it asks for the token once, keeps
// it, and tries again.
'use strict';

const TOKEN_KEY = 'fctrace-token';
let asking = null;

function askToken() {
  // one dialog for every request that needs it
  if (!asking) {
    asking = new Promise((resolve) => {
      const dialog = document.querySelector('#token-dialog');
      const form = dialog.querySelector('form');
      form.onsubmit = (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, dialog.querySelector('#token-input').value.trim());
        dialog.close();
        asking = null;
        resolve();
      };
      dialog.showModal();
    });
  }
  return asking;
}

async function authFetch(path) {
  const send = () => {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  };
  let r = await send();
  for (let tries = 0; r.status === 401 && tries < 3; tries++) {
    await askToken();
    r = await send();
  }
  return r;
}
