// The OAuth callback put the follower's token in the URL fragment (never sent to a server or logged);
// hand it to this merchant's pages once, over POST, and go to the wallet.
(function () {
  var status = document.getElementById("status");
  var slug = status.getAttribute("data-slug");
  var params = new URLSearchParams(window.location.hash.slice(1));
  var token = params.get("token");
  history.replaceState(null, "", window.location.pathname);
  if (!token) {
    status.textContent = "登录未完成，请从公众号菜单重新进入。";
    return;
  }
  fetch("/h5/m/" + encodeURIComponent(slug) + "/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ token: token })
  }).then(function (response) {
    if (response.status === 204) {
      window.location.replace("/h5/m/" + encodeURIComponent(slug) + "/");
    } else {
      status.textContent = "登录已失效，请重新进入。";
    }
  });
})();
