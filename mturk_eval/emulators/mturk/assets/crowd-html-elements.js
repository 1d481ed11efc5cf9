/* Local stand-in for the crowd HTML elements (https://assets.crowd.aws/crowd-html-elements.js),
   written for mturk-eval's local MTurk. It implements what common MTurk templates use:

   - <crowd-form>: wraps its content in a real <form> (so native `required`, `min`, `pattern` work), adds
     a Submit button when the template has none, disables submitting in preview, and on submit posts
     `assignmentId` and `taskAnswers` (a JSON array holding one object, as MTurk does) to
     <turkSubmitTo>/mturk/externalSubmit.
   - answer-format="flatten-objects" on <crowd-form> flattens nested answers into dotted keys.
   - answers: native text-like inputs, textareas and selects give their value (a string); native radio
     buttons and checkboxes give {value: checked} per value under their name; <crowd-input>,
     <crowd-text-area> give their value; <crowd-radio-button>, <crowd-checkbox> give {value: checked}
     under their own name (value "on" when they have none); <crowd-slider> gives a number.
   - <crowd-classifier> gives {"label": choice}, <crowd-classifier-multi-select> {"labels": [...]}.
   - <crowd-button form-action="submit">, <crowd-instructions>, <crowd-alert>, <crowd-card> render as
     plain HTML. Other crowd elements (image and video annotation tools) are not emulated: their
     content shows as is. */
(function () {
  "use strict";
  var PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE";
  var params = new URLSearchParams(window.location.search);
  var assignmentId = params.get("assignmentId") || "";
  var submitTo = (params.get("turkSubmitTo") || "").replace(/\/$/, "");
  var preview = assignmentId === "" || assignmentId === PREVIEW;

  // Custom elements upgrade as the parser meets them, before their children exist: set up once the
  // document is parsed.
  function ready(fn) {
    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", fn, {once: true}); }
    else { fn(); }
  }

  function define(name, cls) { if (!customElements.get(name)) { customElements.define(name, cls); } }

  function attr(el, name, fallback) { return el.hasAttribute(name) ? el.getAttribute(name) : fallback; }

  function collect(form) {
    var out = {};
    form.querySelectorAll("input[name], textarea[name], select[name]").forEach(function (el) {
      if (el.closest("crowd-input, crowd-text-area, crowd-slider, crowd-radio-button, crowd-checkbox,"
                     + " crowd-classifier, crowd-classifier-multi-select")) { return; }
      var name = el.name;
      if (el.type === "radio" || el.type === "checkbox") {
        out[name] = out[name] || {};
        out[name][el.value || "on"] = el.checked;
      } else if (el.type === "submit" || el.type === "button" || el.type === "file") {
        return;
      } else if (el.tagName === "SELECT" && el.multiple) {
        out[name] = Array.prototype.filter.call(el.options, function (o) { return o.selected; })
          .map(function (o) { return o.value; });
      } else {
        out[name] = el.value;
      }
    });
    form.querySelectorAll("crowd-input[name], crowd-text-area[name]").forEach(function (el) {
      out[el.getAttribute("name")] = el.value;
    });
    form.querySelectorAll("crowd-slider[name]").forEach(function (el) { out[el.getAttribute("name")] = Number(el.value); });
    // A checkable element answers {value: checked} under its name; without a value attribute the value is "on".
    form.querySelectorAll("crowd-radio-button[name], crowd-checkbox[name]").forEach(function (el) {
      var name = el.getAttribute("name");
      out[name] = out[name] || {};
      out[name][attr(el, "value", "on")] = el.checked;
    });
    form.querySelectorAll("crowd-classifier[name], crowd-classifier-multi-select[name]").forEach(function (el) {
      out[el.getAttribute("name")] = el.value;
    });
    return out;
  }

  // answer-format="flatten-objects": nested answers become dotted keys ({"q": {"a": true}} -> {"q.a": true}).
  function flatten(obj, prefix, out) {
    Object.keys(obj).forEach(function (k) {
      var v = obj[k], key = prefix ? prefix + "." + k : k;
      if (v !== null && typeof v === "object" && !Array.isArray(v)) { flatten(v, key, out); } else { out[key] = v; }
    });
    return out;
  }

  function post(answers) {
    var f = document.createElement("form");
    f.method = "post";
    f.action = (submitTo || "") + "/mturk/externalSubmit";
    f.style.display = "none";
    [["assignmentId", assignmentId], ["taskAnswers", JSON.stringify([answers])]].forEach(function (kv) {
      var i = document.createElement("input");
      i.type = "hidden"; i.name = kv[0]; i.value = kv[1];
      f.appendChild(i);
    });
    document.body.appendChild(f);
    f.submit();
  }

  class CrowdForm extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._form) { return; }
      var form = document.createElement("form");
      form.className = "crowd-form";
      while (this.firstChild) { form.appendChild(this.firstChild); }
      this.appendChild(form);
      this._form = form;
      var hasSubmit = form.querySelector("crowd-button[form-action='submit'], button[type='submit'],"
                                         + " input[type='submit'], button:not([type])");
      if (!hasSubmit) {
        var b = document.createElement("button");
        b.type = "submit"; b.textContent = "Submit"; b.className = "crowd-submit";
        form.appendChild(b);
      }
      if (preview) {
        form.querySelectorAll("button, input[type='submit']").forEach(function (b) { b.disabled = true; });
        form.querySelectorAll("crowd-button").forEach(function (b) { b.setAttribute("disabled", ""); });
      }
      var self = this;
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        if (preview) { return; }
        var missing = Array.prototype.find.call(form.querySelectorAll("crowd-radio-group[required]"), function (g) {
          return !g.querySelector("crowd-radio-button[checked]");
        });
        if (missing) { window.alert("Please answer every required question."); return; }
        if (!form.reportValidity()) { return; }
        var ok = self.dispatchEvent(new CustomEvent("submit", {cancelable: true}));
        if (ok) {
          var answers = collect(form);
          post(self.getAttribute("answer-format") === "flatten-objects" ? flatten(answers, "", {}) : answers);
        }
      });
    }
    get form() { return this._form; }
    submit() { this._form.requestSubmit(); }
  }

  class CrowdButton extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._button) { return; }
      var b = document.createElement("button");
      b.type = attr(this, "form-action", "") === "submit" ? "submit" : "button";
      while (this.firstChild) { b.appendChild(this.firstChild); }
      if (this.hasAttribute("disabled")) { b.disabled = true; }
      this.appendChild(b);
      this._button = b;
    }
  }

  class CrowdInput extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._input) { return; }
      var label = attr(this, "label", "");
      var i = document.createElement("input");
      ["type", "placeholder", "min", "max", "step", "pattern", "maxlength", "minlength"].forEach(function (a) {
        if (this.hasAttribute(a)) { i.setAttribute(a, this.getAttribute(a)); }
      }, this);
      i.required = this.hasAttribute("required");
      i.value = attr(this, "value", "");
      i.setAttribute("aria-label", label || attr(this, "name", ""));
      if (label) { var l = document.createElement("label"); l.textContent = label + " "; l.appendChild(i); this.appendChild(l); }
      else { this.appendChild(i); }
      this._input = i;
    }
    get value() { return this._input ? this._input.value : attr(this, "value", ""); }
    set value(v) { if (this._input) { this._input.value = v; } }
  }

  class CrowdTextArea extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._input) { return; }
      var t = document.createElement("textarea");
      t.rows = Number(attr(this, "rows", "3"));
      t.required = this.hasAttribute("required");
      if (this.hasAttribute("placeholder")) { t.placeholder = this.getAttribute("placeholder"); }
      t.value = attr(this, "value", "") || this.textContent;
      this.textContent = "";
      t.setAttribute("aria-label", attr(this, "label", attr(this, "name", "")));
      this.appendChild(t);
      this._input = t;
    }
    get value() { return this._input ? this._input.value : ""; }
  }

  class CrowdRadioGroup extends HTMLElement {}

  class CrowdRadioButton extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._input) { return; }
      var i = document.createElement("input");
      i.type = "radio";
      var group = this.closest("crowd-radio-group");
      i.name = "crowd-radio-group-" + (group ? (group._id = group._id || Math.random().toString(36).slice(2)) : attr(this, "name", ""));
      i.checked = this.hasAttribute("checked");
      if (this.hasAttribute("disabled")) { i.disabled = true; }
      var l = document.createElement("label");
      l.appendChild(i);
      while (this.firstChild) { l.appendChild(this.firstChild); }
      this.appendChild(l);
      this._input = i;
      var self = this;
      i.addEventListener("change", function () {
        (group || document).querySelectorAll("crowd-radio-button").forEach(function (b) {
          if (b !== self) { b.removeAttribute("checked"); }
        });
        self.setAttribute("checked", "");
      });
    }
    get checked() { return this._input ? this._input.checked : this.hasAttribute("checked"); }
    set checked(v) { if (this._input) { this._input.checked = !!v; } if (v) { this.setAttribute("checked", ""); } else { this.removeAttribute("checked"); } }
  }

  class CrowdCheckbox extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._input) { return; }
      var i = document.createElement("input");
      i.type = "checkbox";
      i.checked = this.hasAttribute("checked");
      i.required = this.hasAttribute("required");
      var l = document.createElement("label");
      l.appendChild(i);
      while (this.firstChild) { l.appendChild(this.firstChild); }
      this.appendChild(l);
      this._input = i;
    }
    get checked() { return this._input ? this._input.checked : this.hasAttribute("checked"); }
  }

  class CrowdSlider extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._input) { return; }
      var i = document.createElement("input");
      i.type = "range";
      i.min = attr(this, "min", "0"); i.max = attr(this, "max", "100"); i.step = attr(this, "step", "1");
      i.value = attr(this, "value", i.min);
      i.setAttribute("aria-label", attr(this, "name", "slider"));
      this.appendChild(i);
      this._input = i;
    }
    get value() { return this._input ? this._input.value : attr(this, "value", "0"); }
  }

  // <crowd-classifier name categories="['A', 'B']" header>: one choice, answer {"label": choice};
  // <crowd-classifier-multi-select>: several, answer {"labels": [...]}. The regions
  // <classification-target>, <short-instructions>, <full-instructions> show as they are.
  function categoriesOf(el) {
    var raw = attr(el, "categories", "[]");
    try { return JSON.parse(raw); } catch (e) { return JSON.parse(raw.replace(/'/g, '"')); }
  }

  class CrowdClassifier extends HTMLElement {
    connectedCallback() { ready(this.setup.bind(this)); }
    setup() {
      if (this._box) { return; }
      var multi = this.tagName.toLowerCase() === "crowd-classifier-multi-select";
      var box = document.createElement("fieldset");
      var legend = document.createElement("legend");
      legend.textContent = attr(this, "header", "");
      box.appendChild(legend);
      var group = "crowd-classifier-" + Math.random().toString(36).slice(2);
      categoriesOf(this).forEach(function (c) {
        var l = document.createElement("label");
        var i = document.createElement("input");
        i.type = multi ? "checkbox" : "radio";
        i.name = group; i.value = c;
        if (!multi && this.hasAttribute("required")) { i.required = true; }
        l.appendChild(i);
        l.appendChild(document.createTextNode(" " + c));
        l.style.display = "block";
        box.appendChild(l);
      }, this);
      this.insertBefore(box, this.firstChild);
      this._box = box;
    }
    get value() {
      var chosen = Array.prototype.filter.call(this._box ? this._box.querySelectorAll("input") : [],
                                               function (i) { return i.checked; }).map(function (i) { return i.value; });
      return this.tagName.toLowerCase() === "crowd-classifier-multi-select" ? {labels: chosen} : {label: chosen[0] || ""};
    }
  }

  class CrowdPlain extends HTMLElement {
    connectedCallback() { this.style.display = "block"; }
  }

  define("crowd-form", CrowdForm);
  define("crowd-button", CrowdButton);
  define("crowd-input", CrowdInput);
  define("crowd-text-area", CrowdTextArea);
  define("crowd-radio-group", CrowdRadioGroup);
  define("crowd-radio-button", CrowdRadioButton);
  define("crowd-checkbox", CrowdCheckbox);
  define("crowd-slider", CrowdSlider);
  define("crowd-classifier", CrowdClassifier);
  define("crowd-classifier-multi-select", class extends CrowdClassifier {});
  ["crowd-instructions", "crowd-alert", "crowd-card", "short-summary", "detailed-instructions",
   "positive-example", "negative-example", "classification-target", "short-instructions", "full-instructions"].forEach(function (n) { define(n, class extends CrowdPlain {}); });
})();
