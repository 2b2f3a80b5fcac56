(function () {
  "use strict";
  var ENDPOINT = "/api/v2/xray/predictions";
  var ACCEPTED = ["image/jpeg", "image/png"];
  var ACCEPTED_EXT = /\.(jpe?g|png)$/i;
  var CLASSES = ["covid", "normal", "pneumonia_bac"];
  var WORDS = { covid: "Covid-19", normal: "Normal", pneumonia_bac: "Bacterial pneumonia" };
  var KEY_STORAGE = "aistack.apiKey";
  var authMeta = document.querySelector('meta[name="aistack-auth"]');
  var AUTH_ON = !authMeta || authMeta.content !== "off";

  var $ = function (id) { return document.getElementById(id); };
  var input = $("file-input"), zone = $("drop-zone"), statusEl = $("status"),
      errorEl = $("error"), result = $("result"), slider = $("opacity"),
      sliderOut = $("opacity-value"), heatmap = $("heatmap-image");
  var busy = false;

  // The key lives in sessionStorage: this tab only, gone when the tab closes.
  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }
  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) { /* storage disabled: the key is kept in memory below */ }
    memoryKey = key;
  }
  var memoryKey = storedKey();
  function currentKey() { return storedKey() || memoryKey; }

  function showKeyState(message) {
    var panel = $("key-panel");
    panel.hidden = !AUTH_ON;
    if (!AUTH_ON) return;
    var key = currentKey();
    $("key-form").hidden = !!key;
    $("key-status").hidden = !key;
    $("key-hint").textContent = key ? key.slice(0, 16) + "…" : "";
    if (message) showError(message);
  }

  $("key-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var key = $("key-input").value.trim();
    if (!key) return;
    storeKey(key);
    $("key-input").value = "";
    showError("");
    showKeyState();
  });
  $("key-forget").addEventListener("click", function () {
    storeKey("");
    showKeyState();
  });
  $("auth-off").hidden = AUTH_ON;
  showKeyState();

  function setBusy(on, text) {
    busy = on;
    zone.setAttribute("aria-busy", on ? "true" : "false");
    input.disabled = on;
    statusEl.textContent = "";
    if (on) {
      var s = document.createElement("span");
      s.className = "spinner"; s.setAttribute("aria-hidden", "true");
      statusEl.appendChild(s);
    }
    if (text) statusEl.appendChild(document.createTextNode(text));
  }

  function showError(message) {
    errorEl.textContent = message;
  }

  function pct(p) { return (100 * p).toFixed(1) + "%"; }

  function acceptable(file) {
    if (file.type) return ACCEPTED.indexOf(file.type) !== -1;
    return ACCEPTED_EXT.test(file.name);
  }

  function render(data) {
    var label = data.label;
    var verdict = $("label");
    verdict.textContent = WORDS[label] || label;
    verdict.setAttribute("data-label", label);

    var flag = $("covid-flag");
    var pc = data.probabilities.covid;
    if (data.covid_positive) {
      flag.textContent = "Covid-19 positive";
      flag.className = "badge pos";
    } else if (label === "covid") {
      // Covid is the top class but not above the threshold: say so rather than "negative".
      flag.textContent = "Covid-19 not confirmed (below threshold)";
      flag.className = "badge uncertain";
    } else {
      flag.textContent = "Covid-19 negative";
      flag.className = "badge neg";
    }
    $("low-confidence").hidden = !data.low_confidence;
    $("threshold-note").textContent =
      "Covid-19 is flagged positive when it is the predicted class and p(covid) > " +
      data.threshold.toFixed(2) + "; here p(covid) = " + pc.toFixed(3) + ".";

    CLASSES.forEach(function (c) {
      var p = data.probabilities[c];
      $("prob-" + c).textContent = pct(p);
      $("bar-" + c).style.width = (100 * p).toFixed(2) + "%";
    });

    $("model").textContent = data.model.name + " v" + data.model.version;
    $("backend").textContent = data.backend || "—";
    $("latency").textContent = Math.round(data.latency_ms) + " ms";
    $("prediction-id").textContent = data.id;

    $("original-image").src = data.image_url || "";
    $("heatmap-base").src = data.image_url || "";
    heatmap.src = data.heatmap_url || "";
    heatmap.hidden = !data.heatmap_url;
    $("cap-heatmap").textContent = data.heatmap_url
      ? "Grad-CAM heatmap" : "No heatmap for this prediction";

    var links = $("image-links");
    links.textContent = "";
    [["image_url", "original"], ["heatmap_url", "heatmap"], ["overlay_url", "blended overlay"]]
      .forEach(function (pair) {
        if (!data[pair[0]]) return;
        if (links.childNodes.length) links.appendChild(document.createTextNode(" · "));
        var a = document.createElement("a");
        a.href = data[pair[0]]; a.textContent = "Open " + pair[1]; a.target = "_blank";
        a.rel = "noopener";
        links.appendChild(a);
      });

    result.hidden = false;
  }

  function clearResult() {
    result.hidden = true;
    ["original-image", "heatmap-base", "heatmap-image"].forEach(function (id) {
      $(id).removeAttribute("src");
    });
  }

  async function upload(file) {
    if (busy || !file) return;
    showError("");
    clearResult();
    if (AUTH_ON && !currentKey()) {
      showKeyState("Enter an API key first.");
      input.value = "";
      return;
    }
    if (!acceptable(file)) {
      showError("“" + file.name + "” is not a JPEG or PNG image. Please choose a .jpg or .png file.");
      return;
    }
    setBusy(true, "Classifying " + file.name + "…");
    var form = new FormData();
    form.append("file", file, file.name);
    form.append("heatmap", "true");
    try {
      var headers = { "Accept": "application/json" };
      if (AUTH_ON) headers["Authorization"] = "Bearer " + currentKey();
      var response = await fetch(ENDPOINT, { method: "POST", body: form, headers: headers });
      var body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      if (!response.ok) {
        var message = body && body.error && body.error.message;
        if (!message) message = "The server answered " + response.status + " " + response.statusText + ".";
        if (response.status === 503) message += " The model may still be loading; try again in a moment.";
        if (response.status === 401) {
          storeKey("");
          showKeyState();
          message = "The API key was refused: " + message;
        }
        throw new Error(message);
      }
      if (!body) throw new Error("The server's answer could not be read.");
      render(body);
      setBusy(false, "Done: " + (WORDS[body.label] || body.label) + ".");
    } catch (error) {
      setBusy(false, "");
      showError(error && error.message ? error.message : "The upload failed.");
    } finally {
      input.value = "";
    }
  }

  input.addEventListener("change", function () {
    if (input.files && input.files[0]) upload(input.files[0]);
  });

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragover");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("dragover");
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) upload(files[0]);
  });
  // A file dropped outside the zone must not navigate away from the page.
  window.addEventListener("dragover", function (event) { event.preventDefault(); });
  window.addEventListener("drop", function (event) { event.preventDefault(); });

  // Shape both frames like the image (within limits) so it fills them without wide bars.
  $("original-image").addEventListener("load", function () {
    var img = this;
    if (!img.naturalWidth || !img.naturalHeight) return;
    var ratio = Math.min(1.6, Math.max(0.75, img.naturalWidth / img.naturalHeight));
    document.querySelectorAll(".frame").forEach(function (frame) {
      frame.style.setProperty("--ratio", ratio.toFixed(4));
    });
  });

  function applyOpacity() {
    var v = Number(slider.value);
    heatmap.style.opacity = String(v / 100);
    sliderOut.textContent = v + "%";
    slider.setAttribute("aria-valuetext", v + " percent");
  }
  slider.addEventListener("input", applyOpacity);
  slider.addEventListener("change", applyOpacity);
  applyOpacity();
})();
