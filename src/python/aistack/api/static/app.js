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
    document.dispatchEvent(new CustomEvent("aistack:key"));
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

  // A status line: a spinner while working, then what happened.
  function showStatus(element, working, text) {
    element.textContent = "";
    if (working) {
      var s = document.createElement("span");
      s.className = "spinner"; s.setAttribute("aria-hidden", "true");
      element.appendChild(s);
    }
    if (text) element.appendChild(document.createTextNode(text));
  }

  function setBusy(on, text) {
    busy = on;
    zone.setAttribute("aria-busy", on ? "true" : "false");
    input.disabled = on;
    showStatus(statusEl, on, text);
  }

  function showError(message) {
    errorEl.textContent = message;
  }

  // Every API call on the page: the key as a Bearer token, errors as Error(message from the
  // JSON error body) with .status; a refused key (401) is forgotten so that it is asked again.
  async function callApi(url, options) {
    options = options || {};
    var headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
    if (AUTH_ON && currentKey()) headers["Authorization"] = "Bearer " + currentKey();
    var response = await fetch(url, {
      method: options.method || "GET", body: options.body, headers: headers
    });
    var body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      var message = body && body.error && body.error.message;
      if (!message) message = "The server answered " + response.status + " " + response.statusText + ".";
      if (response.status === 401 && options.forgetRefusedKey !== false) {
        storeKey("");
        showKeyState();
        message = "The API key was refused: " + message;
      }
      var error = new Error(message);
      error.status = response.status;
      throw error;
    }
    if (!body) throw new Error("The server's answer could not be read.");
    return body;
  }

  function messageOf(error, fallback) {
    return error && error.message ? error.message : fallback;
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
      var body = await callApi(ENDPOINT, { method: "POST", body: form });
      render(body);
      setBusy(false, "Done: " + (WORDS[body.label] || body.label) + ".");
    } catch (error) {
      setBusy(false, "");
      var message = messageOf(error, "The upload failed.");
      if (error.status === 503) message += " The model may still be loading; try again in a moment.";
      showError(message);
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
  // ---- ICU-admission risk: a form of the model's most informative fields, and a CSV upload.
  // Routes and JSON shapes: docs/ICU.md. Drawn with DOM elements sized through the CSSOM
  // (element.style), which the page's style-src 'self' allows; no inline style attributes.
  var ICU_API = "/icu/api/v1";
  var ICU_TABLE_LIMIT = 500;  // rows drawn in the table; the download holds them all
  var icu = { model: null, loading: false, busy: false, labels: {}, urls: {} };
  var icuForm = $("icu-form"), icuFields = $("icu-fields"), icuStatus = $("icu-status"),
      icuError = $("icu-error"), icuResult = $("icu-result"), icuInfo = $("icu-model-info"),
      csvInput = $("icu-csv-input"), batchStatus = $("icu-batch-status"),
      batchError = $("icu-batch-error"), batchResult = $("icu-batch-result");

  function featureName(name) { return icu.labels[name] || name; }

  function signed(x) {
    return (x > 0 ? "+" : x < 0 ? "\u2212" : "\u00b1") + Math.abs(x).toFixed(3);
  }

  function direction(contribution) {
    return contribution > 0 ? "towards admission" : "against admission";
  }

  function csvCell(value) {
    var text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  // A download link for text made here; the previous file behind the same link is released.
  function offerDownload(link, text) {
    if (icu.urls[link.id]) URL.revokeObjectURL(icu.urls[link.id]);
    icu.urls[link.id] = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    link.href = icu.urls[link.id];
  }

  function needKey(errorElement) {
    if (!AUTH_ON || currentKey()) return false;
    showKeyState();
    errorElement.textContent = "Enter an API key first (above).";
    return true;
  }

  function describeModel(model) {
    var parts = [model.backend + " model v" + model.version +
                 " (training data " + model.training_data_hash.slice(0, 12) + ")."];
    var m = model.metrics || {};
    var figures = [["ROC-AUC", "ROC-AUC"], ["Recall", "recall"], ["Precision", "precision"]]
      .filter(function (pair) { return typeof m[pair[0]] === "number"; })
      .map(function (pair) { return pair[1] + " " + m[pair[0]].toFixed(3); });
    if (figures.length) parts.push("Validation: " + figures.join(", ") + ".");
    parts.push("Admission is predicted at a probability of " + pct(model.threshold) + " or more.");
    return "Model: " + parts.join(" ");
  }

  function buildIcuForm(model) {
    icuFields.textContent = "";
    (model.form_fields || []).forEach(function (field, i) {
      icu.labels[field.name] = field.label;
      var id = "icu-field-" + i;
      var wrap = document.createElement("div");
      wrap.className = "icu-field";
      var label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = field.label;
      var box = document.createElement("input");
      box.type = "number"; box.step = "any"; box.id = id; box.name = field.name;
      box.inputMode = "decimal"; box.autocomplete = "off";
      box.setAttribute("data-testid", "icu-input-" + field.name);
      box.setAttribute("aria-describedby", id + "-hint");
      var hint = document.createElement("code");
      hint.className = "hint"; hint.id = id + "-hint"; hint.textContent = field.name;
      hint.title = "Column name in the workbook and in CSV headers";
      wrap.append(label, box, hint);
      icuFields.appendChild(wrap);
    });
    var header = (model.features || []).map(csvCell).join(",") + "\n";
    offerDownload($("icu-template"), header);
    icuForm.hidden = false;
    $("icu-batch").hidden = false;
  }

  async function loadIcuModel() {
    if (icu.model || icu.loading) return;
    $("icu-model-error").textContent = "";
    if (AUTH_ON && !currentKey()) {
      icuInfo.textContent = "Enter an API key above to use the ICU predictor.";
      return;
    }
    icu.loading = true;
    showStatus(icuInfo, true, "Loading the ICU model…");
    try {
      // Not an action the visitor asked for: a refused key is reported, not forgotten.
      var model = await callApi(ICU_API + "/model", { forgetRefusedKey: false });
      icu.model = model;
      buildIcuForm(model);
      icuInfo.textContent = describeModel(model);
      icuInfo.title = model.evaluation || "";
    } catch (error) {
      icuInfo.textContent = "";
      var message = messageOf(error, "The ICU model could not be loaded.");
      if (error.status === 404) message = "This server has no ICU predictor (" + message + ").";
      if (error.status === 401) {
        message = "The API key was refused: " + message + " Forget it and enter another.";
      }
      $("icu-model-error").textContent = message;
    } finally {
      icu.loading = false;
    }
  }

  // The form's values by column name; an empty field is a missing value and is left out.
  function formRow() {
    var row = {}, unreadable = [];
    icuFields.querySelectorAll("input").forEach(function (box) {
      if (box.validity.badInput) unreadable.push(featureName(box.name));
      else if (box.value.trim() !== "") row[box.name] = Number(box.value);
    });
    if (unreadable.length) {
      throw new Error("Not a number: " + unreadable.join(", ") +
                      ". Use digits and a dot, or leave the field empty.");
    }
    if (!Object.keys(row).length) {
      throw new Error("Enter at least one value: a prediction from no value describes no patient.");
    }
    return row;
  }

  function drawGauge(probability, threshold, label) {
    var gauge = $("icu-gauge");
    gauge.setAttribute("data-label", String(label));
    gauge.setAttribute("aria-valuenow", (100 * probability).toFixed(1));
    gauge.setAttribute("aria-valuetext",
                       pct(probability) + ", threshold " + pct(threshold));
    $("icu-gauge-fill").style.width = (100 * probability).toFixed(2) + "%";
    $("icu-gauge-mark").style.left = (100 * threshold).toFixed(2) + "%";
    var markLabel = $("icu-mark-label");
    markLabel.style.left = (100 * threshold).toFixed(2) + "%";
    markLabel.textContent = "threshold " + pct(threshold);
  }

  function contributionItem(c, largest) {
    var towards = c.contribution > 0;
    var item = document.createElement("li");
    item.className = towards ? "towards" : "against";
    item.setAttribute("data-feature", c.feature);
    item.setAttribute("data-contribution", String(c.contribution));

    var name = document.createElement("span");
    name.className = "name";
    name.textContent = c.label || featureName(c.feature);
    name.title = c.feature;
    var value = document.createElement("span");
    value.className = "value";
    value.textContent = c.value === null ? " (missing)" : " = " + c.value;
    name.appendChild(value);

    var track = document.createElement("span");
    track.className = "track";
    track.setAttribute("aria-hidden", "true");
    ["neg", "pos"].forEach(function (side) {
      var half = document.createElement("span");
      half.className = "half " + side;
      if ((side === "pos") === towards) {
        var bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = (100 * Math.abs(c.contribution) / largest).toFixed(2) + "%";
        half.appendChild(bar);
      }
      track.appendChild(half);
    });

    var amount = document.createElement("span");
    amount.className = "amount";
    amount.textContent = (towards ? "\u25b6 " : "\u25c0 ") + signed(c.contribution) + " " +
      direction(c.contribution);
    item.append(name, track, amount);
    return item;
  }

  function renderIcu(data) {
    var verdict = $("icu-label");
    verdict.textContent = data.prediction;
    verdict.setAttribute("data-label", String(data.label));
    var probability = $("icu-probability");
    probability.textContent = pct(data.probability);
    probability.setAttribute("data-probability", String(data.probability));
    $("icu-threshold").textContent = "admission is predicted at " + pct(data.threshold) +
      " or more";
    drawGauge(data.probability, data.threshold, data.label);

    var top = data.top_features || [];
    var largest = Math.max.apply(null, top.map(function (c) {
      return Math.abs(c.contribution);
    }).concat([1e-12]));
    var list = $("icu-contribs");
    list.textContent = "";
    top.forEach(function (c) { list.appendChild(contributionItem(c, largest)); });
    var method = (icu.model && icu.model.explanation_method || "").split(" (")[0];
    $("icu-contribs-help").textContent = top.length
      ? "How far each value moved this prediction, in " + data.contribution_unit +
        (method ? " (" + method + ")" : "") + "; the longest bar moved it most."
      : "The model reported no contributing features for this prediction.";
    $("icu-model").textContent = data.model.backend + " v" + data.model.version +
      " · training data " + data.model.training_data_hash.slice(0, 12);
    icuResult.hidden = false;
  }

  function clearIcuResult() {
    icuResult.hidden = true;
    icuError.textContent = "";
  }

  icuForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (icu.busy) return;
    clearIcuResult();
    if (needKey(icuError)) return;
    var row;
    try { row = formRow(); } catch (error) { icuError.textContent = error.message; return; }
    icu.busy = true;
    icuForm.setAttribute("aria-busy", "true");
    showStatus(icuStatus, true, "Predicting…");
    try {
      var body = await callApi(ICU_API + "/predict", {
        method: "POST", body: JSON.stringify(row), headers: { "Content-Type": "application/json" }
      });
      renderIcu(body);
      showStatus(icuStatus, false, "");
    } catch (error) {
      showStatus(icuStatus, false, "");
      icuError.textContent = messageOf(error, "The prediction failed.");
    } finally {
      icu.busy = false;
      icuForm.setAttribute("aria-busy", "false");
    }
  });
  icuForm.addEventListener("reset", clearIcuResult);

  function looksLikeCsv(file) {
    return /\.(csv|txt)$/i.test(file.name) || /^text\/(csv|plain)/.test(file.type || "");
  }

  function batchCsv(data) {
    var lines = [["row", "probability", "label", "prediction", "top_feature",
                  "top_feature_value", "top_contribution"].join(",")];
    data.predictions.forEach(function (p) {
      var first = (p.top_features || [])[0] || {};
      lines.push([p.row, p.probability, p.label, p.prediction, first.feature, first.value,
                  first.contribution].map(csvCell).join(","));
    });
    return lines.join("\n") + "\n";
  }

  function batchRow(p) {
    var tr = document.createElement("tr");
    var cells = [String(p.row), pct(p.probability),
                 p.label ? "Admission predicted" : "Not predicted"];
    var first = (p.top_features || [])[0];
    cells.push(first
      ? (first.label || featureName(first.feature)) + " " + signed(first.contribution) + " " +
        direction(first.contribution)
      : "—");
    cells.forEach(function (text, i) {
      var td = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) td.scope = "row";
      td.textContent = text;
      if (i === 1) td.setAttribute("data-probability", String(p.probability));
      if (i === 2) td.className = "badge-cell label-" + p.label;
      if (i === 3 && first) td.className = first.contribution > 0 ? "towards" : "against";
      tr.appendChild(td);
    });
    return tr;
  }

  function renderIcuBatch(data, fileName) {
    var admitted = data.predictions.filter(function (p) { return p.label === 1; }).length;
    var summary = data.count + " row" + (data.count === 1 ? "" : "s") + " of " + fileName +
      " scored by the " + data.model.backend + " model v" + data.model.version + ": " +
      admitted + " with ICU admission predicted (probability " + pct(data.model.threshold) +
      " or more).";
    if (data.predictions.length > ICU_TABLE_LIMIT) {
      summary += " The table shows the first " + ICU_TABLE_LIMIT + "; the download has all.";
    }
    $("icu-batch-summary").textContent = summary;
    var body = $("icu-batch-rows");
    body.textContent = "";
    data.predictions.slice(0, ICU_TABLE_LIMIT).forEach(function (p) {
      body.appendChild(batchRow(p));
    });
    offerDownload($("icu-batch-download"), batchCsv(data));
    batchResult.hidden = false;
  }

  async function scoreCsv(file) {
    batchError.textContent = "";
    batchResult.hidden = true;
    try {
      if (needKey(batchError)) return;
      if (!looksLikeCsv(file)) {
        batchError.textContent = "“" + file.name + "” is not a CSV file. Save the sheet as " +
          "CSV, with the workbook's column names in the header row.";
        return;
      }
      showStatus(batchStatus, true, "Scoring " + file.name + "…");
      var body = await callApi(ICU_API + "/predict/batch", {
        method: "POST", body: file, headers: { "Content-Type": "text/csv" }
      });
      renderIcuBatch(body, file.name);
      showStatus(batchStatus, false, "");
    } catch (error) {
      showStatus(batchStatus, false, "");
      batchError.textContent = messageOf(error, "The CSV could not be scored.");
    } finally {
      csvInput.value = "";  // the same file can be sent again
    }
  }

  csvInput.addEventListener("change", function () {
    if (csvInput.files && csvInput.files[0]) scoreCsv(csvInput.files[0]);
  });
  document.addEventListener("aistack:key", loadIcuModel);
  loadIcuModel();
})();
