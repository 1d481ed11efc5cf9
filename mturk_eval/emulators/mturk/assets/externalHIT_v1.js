/* Local stand-in for Amazon's public HIT helper script
   (https://s3.amazonaws.com/mturk-public/externalHIT_v1.js), written for mturk-eval's local MTurk.
   Same functions, same effect: the hidden assignmentId field gets the assignment id from the page's
   query string, the form posts to <turkSubmitTo>/mturk/externalSubmit, and in preview
   (ASSIGNMENT_ID_NOT_AVAILABLE) the submit button is disabled. */
(function (global) {
  "use strict";
  var PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE";

  function turkGetParam(name, defaultValue) {
    var params = new URLSearchParams(global.location.search);
    var value = params.get(name);
    return value === null ? defaultValue : value;
  }

  function turkGetSubmitToHost() {
    return turkGetParam("turkSubmitTo", "");
  }

  function turkSetAssignmentID(fieldId) {
    var doc = global.document;
    var assignmentId = turkGetParam("assignmentId", "");
    var field = doc.getElementById(fieldId || "assignmentId");
    if (field) { field.value = assignmentId; }
    var button = doc.getElementById("submitButton");
    if (assignmentId === "" || assignmentId === PREVIEW) {
      if (button) {
        button.disabled = true;
        button.value = "You must ACCEPT the HIT before you can submit the results.";
      }
    }
    var form = doc.getElementById("mturk_form");
    var host = turkGetSubmitToHost();
    if (form && host) { form.action = host.replace(/\/$/, "") + "/mturk/externalSubmit"; }
  }

  global.turkGetParam = turkGetParam;
  global.turkGetSubmitToHost = turkGetSubmitToHost;
  global.turkSetAssignmentID = turkSetAssignmentID;
})(window);
