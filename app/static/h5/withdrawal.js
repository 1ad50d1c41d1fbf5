// Confirm a merchant transfer (商家转账) on an official-account page: wx.config with the signature the
// server made from its jsapi_ticket, then requestMerchantTransfer with the bill's package. The page
// reloads to show what WeChat then told the server; it never decides the outcome itself.
(function () {
  var data = JSON.parse(document.getElementById("transfer").textContent);
  var button = document.getElementById("confirm");
  var status = document.getElementById("confirm-status");
  if (typeof wx === "undefined") {
    status.textContent = "请在微信中打开本页面确认收款。";
    return;
  }
  wx.config({
    debug: false,
    appId: data.config.appId,
    timestamp: data.config.timestamp,
    nonceStr: data.config.nonceStr,
    signature: data.config.signature,
    jsApiList: data.config.jsApiList
  });
  wx.error(function () {
    status.textContent = "页面已过期，请刷新后再确认。";
  });
  wx.ready(function () {
    button.disabled = false;
    button.addEventListener("click", function () {
      button.disabled = true;
      var done = function (res) {
        var message = (res && (res.err_msg || res.errMsg)) || "";
        if (message.indexOf(":ok") > 0) {
          status.textContent = "已确认，正在到账…";
          window.setTimeout(function () { window.location.reload(); }, 1500);
        } else {
          status.textContent = message.indexOf(":cancel") > 0 ? "已取消，可稍后再确认。" : "确认未完成，请稍后再试。";
          button.disabled = false;
        }
      };
      if (typeof WeixinJSBridge !== "undefined") {
        WeixinJSBridge.invoke("requestMerchantTransfer", data.transfer, done);
      } else {
        status.textContent = "请在微信中打开本页面确认收款。";
        button.disabled = false;
      }
    });
  });
})();
